"""SQLite group commit: taps that arrive together share one transaction and still get, each,
the answer and the rows that storing them one at a time gives.

The reference is a twin world in the same database (its own cards and twin stations), where
the same reports are recorded one by one, each awaited before the next. Both worlds start from
the same state: a tap stored before, another station's tap, a blocked card, and a card whose
counter was set back below a stored tap (its retried key is taken inside the group, so the
group falls back to one transaction per tap).
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from tracker_testlib import (
    block_and_set_back,
    count_rows,
    make_station,
    make_tap,
    twin_neutral,
    twin_uid,
)

from tracker import migrations
from tracker.db import Database, make_engine
from tracker.models import TapCreate
from tracker.services.taps import CardBlocked, CounterConflict, TapRecorder
from tracker.services.taps import fast as fast_module

uid_of = twin_uid
neutral = twin_neutral


def tap(world: int, card: str, counter: int, **kw: Any) -> TapCreate:
    return TapCreate.model_validate(make_tap(uid_of(world, card), counter, **kw))


def reports(world: int) -> list[TapCreate]:
    """Accepted taps only: every one of them goes to the group (comments: the answer)."""
    return [
        tap(world, "X", 2),  # 201
        tap(world, "X", 2),  # the same report twice: 200, the tap above
        tap(world, "X", 1),  # stored before: 200
        tap(world, "N", 5, card_id="card-n"),  # unknown card: created, 201
        tap(world, "N", 4),  # below 5: 409
        tap(world, "Y", 3),  # another station stored Y:3: 409
        tap(world, "Y", 4),  # 201
        tap(world, "W", 2),  # blocked card: 403
        tap(world, "R", 3),  # counter set back to 2: 201
        tap(world, "R", 5),  # key stored before the set-back: 200 (the group falls back)
        tap(world, "R", 6),  # 201
        tap(world, "Z", 7),  # new card: 201
        tap(world, "Z", 9),  # 201
        tap(world, "Z", 8),  # 409
        tap(world, "X", 3, card_id="card-x"),  # 201, and the card gets its id
    ]


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    eng = make_engine(f"sqlite:///{tmp_path / 'tracker.sqlite'}")
    migrations.upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def rig(engine: Engine) -> Any:
    """A recorder, its stations' ids, and the sizes of the groups it stores."""
    for name in ("me-1", "other-1", "me-2", "other-2"):
        make_station(engine, name)
    database = Database(engine)
    recorder = TapRecorder(database)
    with engine.connect() as conn:
        ids = dict(conn.execute(sa.text("SELECT name, id FROM station")).all())
    sizes: list[int] = []
    original = fast_module.SqliteFastPath._store_group

    def spy(self: Any, group: list[Any]) -> Any:
        sizes.append(len(group))
        return original(self, group)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fast_module.SqliteFastPath, "_store_group", spy)
        yield recorder, ids, sizes
    recorder.close()


def record(recorder: TapRecorder, ids: dict[str, int], name: str, report: TapCreate) -> Any:
    return recorder.record(report, station_name=name, station_id=ids[name])


def prepare(recorder: TapRecorder, engine: Engine, ids: dict[str, int], world: int) -> None:
    me, other = f"me-{world}", f"other-{world}"
    for who, report in ((me, tap(world, "X", 1)), (other, tap(world, "Y", 3)),
                        (me, tap(world, "W", 1)), (me, tap(world, "R", 5))):
        assert record(recorder, ids, who, report)[1] is True
    block_and_set_back(engine, world)


def shape(world: int, answer: Any) -> Any:
    """What a station is told: created or already stored (which tap), or refused."""
    if isinstance(answer, CounterConflict):
        return 409
    if isinstance(answer, CardBlocked):
        return 403
    if isinstance(answer, BaseException):
        raise answer
    public, created = answer
    return (201 if created else 200), neutral(world, public.idempotency_key)


def rows(engine: Engine, world: int) -> Any:
    with engine.connect() as conn:
        taps = conn.execute(sa.text(
            "SELECT c.uid, t.counter, s.name, t.idempotency_key FROM tap t"
            " JOIN card c ON c.id = t.card_pk JOIN station s ON s.id = t.station_pk"
            " WHERE c.uid LIKE :p"), {"p": f"04{world:02X}%"}).all()
        cards = conn.execute(sa.text(
            "SELECT uid, last_counter, status, card_id FROM card WHERE uid LIKE :p"),
            {"p": f"04{world:02X}%"}).all()
    return (
        sorted((neutral(world, u), n, s.split("-")[0], neutral(world, k))
               for u, n, s, k in taps),
        sorted((neutral(world, u), n, st, cid) for u, n, st, cid in cards),
    )


def test_taps_arriving_together_answer_and_store_what_one_by_one_does(
    engine: Engine, rig: Any
) -> None:
    recorder, ids, sizes = rig
    prepare(recorder, engine, ids, 1)
    prepare(recorder, engine, ids, 2)

    async def one_by_one() -> list[Any]:
        out = []
        for report in reports(1):
            try:
                out.append(await recorder.record_async(
                    report, station_name="me-1", station_id=ids["me-1"]))
            except Exception as exc:
                out.append(exc)
        return out

    async def together() -> list[Any]:
        return await asyncio.gather(
            *(recorder.record_async(r, station_name="me-2", station_id=ids["me-2"])
              for r in reports(2)),
            return_exceptions=True,
        )

    sizes.clear()
    singles = [shape(1, a) for a in asyncio.run(one_by_one())]
    assert sizes and max(sizes) == 1
    sizes.clear()
    raw = asyncio.run(together())
    grouped = [shape(2, a) for a in raw]
    assert sizes[0] == len(reports(2))  # every report was in one group

    assert [s if isinstance(s, int) else s[0] for s in singles] == [
        201, 200, 200, 201, 409, 409, 201, 403, 201, 200, 201, 201, 201, 409, 201]
    assert grouped == singles
    assert rows(engine, 2) == rows(engine, 1)
    # Requests sent together have no order between them: the taps the group did not store
    # are answered after it, so a refusal names the card's counter after the group - the
    # figure the card really had when the answer was made (Y:3 is told 4 where one by one,
    # before Y:4, it was told 3).
    assert [a.last_counter for a in raw if isinstance(a, CounterConflict)] == [5, 4, 9]


def test_a_group_of_new_taps_is_one_transaction_and_all_of_it_is_stored(
    engine: Engine, rig: Any
) -> None:
    recorder, ids, sizes = rig
    record(recorder, ids, "me-1", tap(1, "X", 1))  # the station's touch is done
    cards = [f"04E0{n:010X}" for n in range(40)]

    async def burst() -> list[Any]:
        return await asyncio.gather(*(
            recorder.record_async(TapCreate.model_validate(make_tap(uid, 1)),
                                  station_name="me-1", station_id=ids["me-1"])
            for uid in cards))

    sizes.clear()
    answers = asyncio.run(burst())
    assert sizes == [40]
    assert all(created for _, created in answers)
    assert len({public.id for public, _ in answers}) == 40
    assert count_rows(engine, "card", "last_counter = 1") == 41
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT count(*), sum(taps) FROM tap_daily_count")).one()
    assert stored[1] == 41  # the day's rollup counted every tap of the group


def test_a_burst_larger_than_a_group_is_stored_in_turns_of_the_loop(
    engine: Engine, rig: Any
) -> None:
    recorder, ids, sizes = rig
    record(recorder, ids, "me-1", tap(1, "X", 1))
    count = fast_module.MAX_GROUP * 2 + 50

    async def burst() -> list[Any]:
        return await asyncio.gather(*(
            recorder.record_async(TapCreate.model_validate(make_tap(f"04F0{n:010X}", 1)),
                                  station_name="me-1", station_id=ids["me-1"])
            for n in range(count)))

    sizes.clear()
    answers = asyncio.run(burst())
    assert sizes == [fast_module.MAX_GROUP, fast_module.MAX_GROUP, 50]
    assert all(created for _, created in answers)
    assert count_rows(engine, "tap") == count + 1


def _hold_lock(database: Database, seconds: float, held: threading.Event) -> None:
    with database.write_lock:
        held.set()
        time.sleep(seconds)


def test_a_group_waits_on_the_loop_for_a_lock_held_briefly(
    engine: Engine, rig: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder, ids, sizes = rig
    # A patient group, so a loaded machine waking the holder late cannot send it to threads.
    monkeypatch.setattr(fast_module, "GROUP_WAIT_S", 2.0)
    record(recorder, ids, "me-1", tap(1, "X", 1))
    held = threading.Event()
    holder = threading.Thread(target=_hold_lock, args=(recorder.database, 0.005, held))

    async def burst() -> list[Any]:
        holder.start()
        held.wait()
        return await asyncio.gather(*(
            recorder.record_async(tap(1, "X", n), station_name="me-1", station_id=ids["me-1"])
            for n in (2, 3, 4)))

    sizes.clear()
    answers = asyncio.run(burst())
    holder.join()
    assert [created for _, created in answers] == [True, True, True]
    assert sizes == [3]  # stored together on the loop once the lock was free


def test_a_lock_held_longer_sends_the_taps_to_the_threads_which_wait_for_it(
    engine: Engine, rig: Any
) -> None:
    recorder, ids, sizes = rig
    record(recorder, ids, "me-1", tap(1, "X", 1))
    held = threading.Event()
    hold_s = fast_module.GROUP_WAIT_S * 5
    holder = threading.Thread(target=_hold_lock, args=(recorder.database, hold_s, held))

    async def burst() -> tuple[list[Any], float]:
        holder.start()
        held.wait()
        start = time.monotonic()
        # Two cards: the threads have no order between them (one card's 2 and 3 could
        # arrive 3 first, and 2 would rightly be refused).
        got = await asyncio.gather(*(
            recorder.record_async(tap(1, card, 2), station_name="me-1", station_id=ids["me-1"])
            for card in "XZ"))
        return got, time.monotonic() - start

    sizes.clear()
    answers, waited = asyncio.run(burst())
    holder.join()
    assert [created for _, created in answers] == [True, True]
    assert sizes == []  # not stored by the loop: the threads waited for the lock
    assert waited >= hold_s * 0.8
    assert count_rows(engine, "tap") == 3


def test_a_request_cancelled_while_its_group_waits_keeps_its_tap_and_a_retry_finds_it(
    engine: Engine, rig: Any
) -> None:
    recorder, ids, _ = rig
    record(recorder, ids, "me-1", tap(1, "X", 1))

    async def cancel_then_retry() -> Any:
        task = asyncio.ensure_future(
            recorder.record_async(tap(1, "X", 2), station_name="me-1", station_id=ids["me-1"]))
        await asyncio.sleep(0)  # the task is waiting for the group commit
        task.cancel()
        await asyncio.sleep(0.01)
        assert task.cancelled()
        return await recorder.record_async(
            tap(1, "X", 2), station_name="me-1", station_id=ids["me-1"])

    public, created = asyncio.run(cancel_then_retry())
    assert created is False  # the station's retry is told the tap is stored
    assert public.counter == 2
    assert count_rows(engine, "tap") == 2
