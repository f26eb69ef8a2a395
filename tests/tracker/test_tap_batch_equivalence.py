"""A batch answers and stores exactly what posting its reports one by one does (SQLite and
PostgreSQL), whichever way the tracker stores it (set-based runs, the general path per tap).

The reference is computed independently: the same reports, for a twin set of cards and a
twin station, posted singly to ``POST /api/v1/taps``. Both worlds start from the same state
(a tap stored before, another station's tap, a blocked card, a card whose counter an operator
set back below a stored tap), and afterwards their answers and their rows must match.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tracker_testlib import (
    TWIN_CARDS as CARDS,
)
from tracker_testlib import (
    StationCredentials,
    block_and_set_back,
    count_rows,
    make_station,
    make_tap,
    twin_neutral,
    twin_uid,
)

from tracker.db import Database, make_engine
from tracker.models import TapCreate
from tracker.services.taps import CounterConflict, TapRecorder
from tracker.settings import TrackerSettings
from tracker.web.app import create_app

uid_of = twin_uid
neutral = twin_neutral


def tap(world: int, card: str, counter: int, **kw: Any) -> dict[str, Any]:
    return make_tap(uid_of(world, card), counter, **kw)


def unverified(world: int, card: str, counter: int) -> dict[str, Any]:
    return {**tap(world, card, counter, key=f"till:{uuid.uuid4()}"), "verified": False}


def reports(world: int) -> list[Any]:
    """The mix a station catching up may send (comments: the single route's answer)."""
    return [
        tap(world, "X", 2),  # new counter: 201
        tap(world, "X", 2),  # the same report twice in the batch: 200, the tap above
        tap(world, "X", 1),  # stored before the batch by this station: 200
        tap(world, "N", 5, card_id="card-n"),  # unknown card: created, 201
        tap(world, "N", 4),  # below 5: 409
        tap(world, "Y", 3),  # another station stored Y:3: 409
        tap(world, "Y", 4),  # 201
        tap(world, "W", 2),  # blocked card: 403
        tap(world, "X", 0, outcome="refused", reason="bad_cmac"),  # refused tap: 201
        {**tap(world, "X", 3), "idempotency_key": f"{uid_of(world, 'X')}:4"},  # 422
        unverified(world, "X", 1),  # unverified: no compare-and-set, 201
        tap(world, "X", 3, card_id="card-x"),  # 201, and the card gets its id
        tap(world, "R", 3),  # counter set back to 2 by an operator: 201
        tap(world, "R", 5),  # the key is stored (before the set-back): 200
        tap(world, "R", 6),  # 201
        tap(world, "Z", 7),  # 201
        tap(world, "Z", 9),  # 201
        tap(world, "Z", 8),  # 409
        "not an object",  # 422
        tap(world, "X", 3),  # 200
    ]


def prepare(client: TestClient, engine: Engine, world: int, me: StationCredentials,
            other: StationCredentials) -> None:
    for who, body in (
        (me, tap(world, "X", 1)),
        (other, tap(world, "Y", 3)),
        (me, tap(world, "W", 1)),
        (me, tap(world, "R", 5)),
    ):
        assert client.post("/api/v1/taps", json=body, headers=who.headers).status_code == 201
    block_and_set_back(engine, world)


def key_of(engine: Engine, tap_id: int) -> str:
    with engine.connect() as conn:
        return str(conn.execute(sa.text("SELECT idempotency_key FROM tap WHERE id = :i"),
                                {"i": tap_id}).scalar_one())


def answer_shape(engine: Engine, world: int, status: int, body: dict[str, Any]) -> Any:
    """What a user of the answer sees: the code and which tap (by key) or why not."""
    if status in (200, 201):
        key = neutral(world, key_of(engine, body["tap_id"]))
        return status, key if key[0] in CARDS and key[1] == ":" else "a station key"
    if status == 422:
        return status, sorted(e["field"] for e in body["detail"])
    return status, body["detail"]


def rows(engine: Engine, world: int) -> Any:
    with engine.connect() as conn:
        taps = conn.execute(sa.text(
            "SELECT c.uid, t.counter, t.outcome, t.verified, s.name, t.idempotency_key"
            " FROM tap t JOIN card c ON c.id = t.card_pk JOIN station s ON s.id = t.station_pk"
            " WHERE c.uid LIKE :p"), {"p": f"04{world:02X}%"}).all()
        cards = conn.execute(sa.text(
            "SELECT uid, last_counter, status, card_id FROM card WHERE uid LIKE :p"),
            {"p": f"04{world:02X}%"}).all()
    twin = {"till-1": "me", "till-2": "other", "till-3": "me", "till-4": "other"}
    return (
        sorted((neutral(world, u), n, o, bool(v), twin[s],
                neutral(world, k) if o == "accepted" and v else "station key")
               for u, n, o, v, s, k in taps),
        sorted((neutral(world, u), n, st, cid) for u, n, st, cid in cards),
    )


def test_a_batch_answers_and_stores_what_single_posts_do(
    client: TestClient, engine: Engine, station: StationCredentials
) -> None:
    other = make_station(engine, "till-2")
    me_b, other_b = make_station(engine, "till-3"), make_station(engine, "till-4")
    prepare(client, engine, 1, station, other)
    prepare(client, engine, 2, me_b, other_b)

    singles = []
    for report in reports(1):
        resp = client.post("/api/v1/taps", json=report, headers=station.headers)
        body = resp.json()
        if resp.status_code in (200, 201):
            body = {"tap_id": body["tap"]["id"]}
        singles.append(answer_shape(engine, 1, resp.status_code, body))

    resp = client.post("/api/v1/taps/batch", json={"taps": reports(2)}, headers=me_b.headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["complete"] is True
    batched = [answer_shape(engine, 2, r["status"], r) for r in resp.json()["results"]]

    assert [s for s, _ in singles] == [201, 200, 200, 201, 409, 409, 201, 403, 201, 422,
                                       201, 201, 201, 200, 201, 201, 201, 409, 422, 200]
    assert batched == singles
    assert rows(engine, 2) == rows(engine, 1)

    # Sent again (the answer was lost): nothing new is stored, every answer says why.
    again = client.post("/api/v1/taps/batch", json={"taps": reports(2)}, headers=me_b.headers)
    codes = [r["status"] for r in again.json()["results"]]
    assert codes == [200, 200, 200, 200, 409, 409, 200, 403, 201, 422,
                     201, 200, 200, 200, 200, 200, 200, 409, 422, 200]
    assert rows(engine, 2)[1] == rows(engine, 1)[1]  # the cards did not move


def test_concurrent_batches_on_the_same_cards_store_each_tap_once(
    engine: Engine, station: StationCredentials
) -> None:
    """Two stations sending the same taps at once (the compare-and-set decides): each tap is
    stored exactly once, by one of them; the other is told 409; counters end at the top."""
    other = make_station(engine, "till-2")
    database = Database(engine)
    recorder = TapRecorder(database)
    with database.sessions() as s:
        ids = dict(s.connection().execute(sa.text("SELECT name, id FROM station")).all())
    cards = [f"04D0{n:010X}" for n in range(20)]
    taps = [TapCreate.model_validate(make_tap(uid, c)) for c in range(1, 26) for uid in cards]
    answers: dict[str, list[Any]] = {}

    def send(who: StationCredentials) -> None:
        got: list[Any] = []
        for start in range(0, len(taps), 100):
            got += recorder.record_many(taps[start:start + 100], station_name=who.name,
                                        station_id=ids[who.name])
        answers[who.name] = got

    threads = [threading.Thread(target=send, args=(who,)) for who in (station, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    mine, theirs = answers[station.name], answers[other.name]
    assert len(mine) == len(theirs) == len(taps)
    for a, b in zip(mine, theirs, strict=True):
        created = [isinstance(x, tuple) and x[1] for x in (a, b)]
        assert created.count(True) == 1, (a, b)
        loser = b if created[0] else a
        assert isinstance(loser, CounterConflict), loser
    assert count_rows(engine, "tap") == len(taps)
    assert count_rows(engine, "card", "last_counter = 25") == len(cards)
    winners = [x[0] for x in (*mine, *theirs) if isinstance(x, tuple)]
    assert len(set(winners)) == len(taps)


def test_random_backlogs_get_the_one_by_one_answers(
    engine: Engine, station: StationCredentials
) -> None:
    """Seeded random backlogs (five cards, counters jumping back and forth, repeats, a blocked
    card, refused taps): ``record_many`` answers each tap as ``record`` called tap by tap
    does, for a twin set of cards, and leaves the same rows."""
    import random

    from tracker.services.taps import CardBlocked

    database = Database(engine)
    recorder = TapRecorder(database)
    with database.sessions() as s:
        me = int(s.connection().execute(sa.text("SELECT id FROM station")).scalar_one())

    def outcome_of(world: int, got: Any) -> Any:
        if isinstance(got, CounterConflict):
            return "409", got.last_counter
        if isinstance(got, CardBlocked):
            return "403", None
        tap_id, created = got
        key = neutral(world, key_of(engine, tap_id))
        return ("201" if created else "200"), key if key[1] == ":" else "a station key"

    for seed in range(6):
        rnd = random.Random(seed)
        singles_world, batch_world = 10 + 2 * seed, 11 + 2 * seed
        reports = []
        for _ in range(120):
            card = rnd.choice("XNYWZ")
            if rnd.random() < 0.1:
                reports.append(("refused", card, 0))
            else:
                reports.append(("accepted", card, rnd.randint(1, 40)))

        def taps_for(world: int, chosen: list[tuple[str, str, int]] = reports) -> list[TapCreate]:
            return [TapCreate.model_validate(
                tap(world, card, n) if kind == "accepted"
                else tap(world, card, n, outcome="refused", reason="bad_cmac"))
                for kind, card, n in chosen]

        for world in (singles_world, batch_world):
            recorder.record(TapCreate.model_validate(tap(world, "W", 3)),
                            station_name=station.name, station_id=me)
            recorder.record(TapCreate.model_validate(tap(world, "Y", 20)),
                            station_name=station.name, station_id=me)
            with engine.begin() as conn:
                conn.execute(sa.text("UPDATE card SET status = 'blocked' WHERE uid = :u"),
                             {"u": uid_of(world, "W")})
        singles = []
        for one in taps_for(singles_world):
            try:
                public, created = recorder.record(one, station_name=station.name,
                                                  station_id=me)
                singles.append(outcome_of(singles_world, (public.id, created)))
            except (CounterConflict, CardBlocked) as refusal:
                singles.append(outcome_of(singles_world, refusal))
        batched = [outcome_of(batch_world, got) for got in recorder.record_many(
            taps_for(batch_world), station_name=station.name, station_id=me)]
        assert batched == singles, seed
        assert rows(engine, batch_world) == rows(engine, singles_world), seed
        assert {code for code, _ in singles} >= {"201", "200", "409", "403"}, seed


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_batch_after_the_database_dropped_its_connections_is_stored_once(
    client: TestClient, station: StationCredentials, engine: Engine
) -> None:
    """Pooled connections are not pinged before use: after a restart (here: every backend of
    the test database terminated) the next batch is stored, each tap once."""
    first = [tap(1, "X", n) for n in range(1, 4)]
    resp = client.post("/api/v1/taps/batch", json={"taps": first}, headers=station.headers)
    assert [r["status"] for r in resp.json()["results"]] == [201, 201, 201]
    with psycopg.connect(engine.url.set(drivername="postgresql").render_as_string(False)) as pg:
        pg.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    second = [tap(1, "X", n) for n in range(2, 9)]
    resp = client.post("/api/v1/taps/batch", json={"taps": second}, headers=station.headers)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    done = [r["status"] for r in answer["results"]]
    assert done == [200, 200, 201, 201, 201, 201, 201]
    assert answer["complete"] is True  # recovered on fresh connections: nothing to resend
    assert count_rows(engine, "tap") == 8
    assert count_rows(engine, "card", "last_counter = 8") == 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_batch_while_the_write_lock_is_held_elsewhere_gets_503_and_stores_nothing(
    settings: TrackerSettings, station: StationCredentials, engine: Engine
) -> None:
    """SQLite's write lock held by another connection (a backup, another process): the batch
    is answered 503 with Retry-After after the busy timeout, nothing half-stored; sent again
    once the lock is free, every tap is stored."""
    import sqlite3

    served = make_engine(settings)  # the busy timeout `tracker serve` has
    batch = [tap(1, "X", n) for n in range(1, 6)]
    holder = sqlite3.connect(str(engine.url.database), timeout=0)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with TestClient(create_app(settings, engine=served)) as client:
            started = time.monotonic()
            resp = client.post("/api/v1/taps/batch", json={"taps": batch},
                               headers=station.headers)
            assert time.monotonic() - started < 5
    finally:
        holder.rollback()
        holder.close()
    assert resp.status_code == 503, resp.text
    assert int(resp.headers["retry-after"]) >= 1
    assert count_rows(engine, "tap") == 0
    with TestClient(create_app(settings, engine=served)) as client:
        again = client.post("/api/v1/taps/batch", json={"taps": batch}, headers=station.headers)
    assert [r["status"] for r in again.json()["results"]] == [201] * 5
    assert count_rows(engine, "tap") == 5
    served.dispose()
