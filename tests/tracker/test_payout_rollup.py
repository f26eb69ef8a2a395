"""The payout rollups (``payout_daily``, ``payout_card_total``, kept by triggers) equal a GROUP
BY over ``payout`` and a tally kept here in Python, after every kind of write a tracker sees:
single and bulk inserts (one multi-row statement: PostgreSQL's statement trigger), webhook
state changes, amount and card changes, a payout moved to another day, deletes, and updates
of columns the rollup does not count; on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlmodel import SQLModel

import tracker.models  # noqa: F401  (the tables in SQLModel.metadata)

T0 = datetime(2026, 10, 1, 23, 30, tzinfo=UTC)
STATES = ["AwaitingPayment", "InProgress", "Completed", "Cancelled", "Failed"]


def _table(name: str) -> sa.Table:
    return SQLModel.metadata.tables[name]


def _rollups(conn: sa.Connection) -> tuple[dict[Any, tuple[int, int]], dict[Any, tuple[int, int]]]:
    """The rollups as stored, groups emptied by deletes and moves left out."""
    daily = {(str(d), s): (int(n), int(m)) for d, s, n, m in conn.execute(sa.text(
        "SELECT day, state, payouts, amount_msat FROM payout_daily"))}
    cards = {(int(c), s): (int(n), int(m)) for c, s, n, m in conn.execute(sa.text(
        "SELECT card_pk, state, payouts, amount_msat FROM payout_card_total"))}
    for groups in (daily, cards):
        for key in [k for k, v in groups.items() if v == (0, 0)]:
            del groups[key]
    return daily, cards


def _grouped(conn: sa.Connection, postgresql: bool) -> tuple[dict[Any, Any], dict[Any, Any]]:
    day = "(created AT TIME ZONE 'UTC')::date" if postgresql else "date(created)"
    daily = {(str(d), s): (int(n), int(m)) for d, s, n, m in conn.execute(sa.text(
        f"SELECT {day}, state, COUNT(*), SUM(amount_msat) FROM payout GROUP BY 1, 2"))}
    cards = {(int(c), s): (int(n), int(m)) for c, s, n, m in conn.execute(sa.text(
        "SELECT card_pk, state, COUNT(*), SUM(amount_msat) FROM payout "
        "WHERE card_pk IS NOT NULL GROUP BY 1, 2"))}
    return daily, cards


def _tally(rows: dict[int, dict[str, Any]]) -> tuple[dict[Any, Any], dict[Any, Any]]:
    daily: Counter[Any] = Counter()
    daily_msat: Counter[Any] = Counter()
    cards: Counter[Any] = Counter()
    cards_msat: Counter[Any] = Counter()
    for p in rows.values():
        key = (p["created"].date().isoformat(), p["state"])
        daily[key] += 1
        daily_msat[key] += p["amount_msat"]
        if p["card_pk"] is not None:
            cards[(p["card_pk"], p["state"])] += 1
            cards_msat[(p["card_pk"], p["state"])] += p["amount_msat"]
    return ({k: (n, daily_msat[k]) for k, n in daily.items()},
            {k: (n, cards_msat[k]) for k, n in cards.items()})


def test_rollups_follow_inserts_updates_and_deletes(engine: Engine) -> None:
    postgresql = engine.dialect.name == "postgresql"
    rnd = random.Random(11)
    payout = _table("payout")
    rows: dict[int, dict[str, Any]] = {}

    def new(i: int) -> dict[str, Any]:
        when = T0 + timedelta(minutes=rnd.randint(0, 3 * 24 * 60))
        return {"id": i, "card_pk": rnd.choice([1, 2, 3, None]), "station_pk": 1,
                "amount_msat": rnd.randint(1, 9_999) * 1000, "state": rnd.choice(STATES),
                "created": when, "updated": when}

    def check(step: str) -> None:
        with engine.connect() as conn:
            stored = _rollups(conn)
            assert stored == _grouped(conn, postgresql), step
        assert stored == _tally(rows), step

    with engine.begin() as conn:
        conn.execute(sa.insert(_table("station")), [{"id": 1, "name": "s", "created": T0}])
        conn.execute(sa.insert(_table("card")), [
            {"id": c, "uid": f"04BB{c:010X}", "status": "active", "first_seen": T0,
             "last_seen": T0} for c in (1, 2, 3)])
    check("empty")
    with engine.begin() as conn:
        for i in range(1, 21):  # one statement each
            rows[i] = new(i)
            conn.execute(sa.insert(payout), rows[i])
    check("single inserts")
    bulk = [new(i) for i in range(21, 321)]
    with engine.begin() as conn:  # one multi-row INSERT statement
        conn.execute(sa.insert(payout).values(bulk))
    rows.update({p["id"]: p for p in bulk})
    check("bulk insert")

    def update(i: int, **values: Any) -> None:
        with engine.begin() as conn:
            conn.execute(sa.update(payout).where(payout.c.id == i).values(**values))
        rows[i].update(values)

    for i in range(1, 321, 7):  # webhooks: AwaitingPayment -> InProgress -> Completed
        update(i, state="InProgress")
        update(i, state="Completed")
    check("state changes")
    update(5, amount_msat=rows[5]["amount_msat"] + 1000)
    update(6, state="Failed", amount_msat=1000)
    update(7, card_pk=None)
    update(8, card_pk=3)
    update(9, created=rows[9]["created"] + timedelta(days=1))
    update(10, state=rows[10]["state"])  # the same value: nothing moves
    update(11, updated=T0 + timedelta(days=9), issuer_reason="polled")  # not counted
    check("amount, card, day and other changes")
    with engine.begin() as conn:  # one statement over many rows
        conn.execute(sa.text("UPDATE payout SET state = 'Cancelled' WHERE id > 300"))
        conn.execute(sa.text("DELETE FROM payout WHERE id % 10 = 3"))
    for i in list(rows):
        if i > 300:
            rows[i]["state"] = "Cancelled"
        if i % 10 == 3:
            del rows[i]
    check("bulk update and deletes")


def test_migration_fills_the_rollups_from_existing_payouts(db_url: str) -> None:
    """A tracker upgraded with payouts already stored starts with exact rollups, and the
    triggers carry on from there."""
    from tracker import migrations
    from tracker.db import make_engine

    engine = make_engine(db_url)
    try:
        migrations.upgrade(engine, "0010")
        rnd = random.Random(4)
        rows = {}
        for i in range(1, 101):
            when = T0 + timedelta(hours=rnd.randint(0, 72))
            rows[i] = {"id": i, "card_pk": rnd.choice([1, 2, None]), "station_pk": 1,
                       "amount_msat": rnd.randint(1, 500) * 1000, "state": rnd.choice(STATES),
                       "created": when, "updated": when}
        with engine.begin() as conn:
            conn.execute(sa.insert(_table("station")), [{"id": 1, "name": "s", "created": T0}])
            conn.execute(sa.insert(_table("card")), [
                {"id": c, "uid": f"04CC{c:010X}", "status": "active", "first_seen": T0,
                 "last_seen": T0} for c in (1, 2)])
            conn.execute(sa.insert(_table("payout")), list(rows.values()))
        migrations.upgrade(engine)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE payout SET state = 'Completed' WHERE id = 1"))
        rows[1]["state"] = "Completed"
        with engine.connect() as conn:
            stored = _rollups(conn)
            assert stored == _grouped(conn, engine.dialect.name == "postgresql")
        assert stored == _tally(rows)
    finally:
        engine.dispose()


def test_two_transactions_moving_payouts_across_the_same_rollup_rows_do_not_deadlock(
    engine: Engine,
) -> None:
    """A reconcile batch and a webhook (or two tracker processes) move payouts of one day in
    one transaction each. Their rollup triggers lock a (day, state) row for the old state and
    one for the new: T1 moves p1 AwaitingPayment -> Completed, T2 moves p3 InProgress ->
    Completed, then T1 moves p2 InProgress -> Cancelled. Unserialised, T2 holds InProgress and
    waits for Completed while T1 waits for InProgress (PostgreSQL aborts one as a deadlock).
    Both must commit, and the rollups must equal the payouts."""
    import threading

    from tracker.db import Database, payout_write_lock

    postgresql = engine.dialect.name == "postgresql"
    database = Database(engine)
    payout = _table("payout")
    with engine.begin() as conn:
        conn.execute(sa.insert(_table("station")), [{"id": 1, "name": "s", "created": T0}])
        conn.execute(sa.insert(_table("card")), [{"id": 1, "uid": "04CC0000000001",
                     "status": "active", "first_seen": T0, "last_seen": T0}])
        conn.execute(sa.insert(payout), [
            {"id": i, "card_pk": 1, "station_pk": 1, "amount_msat": 1000 * i, "state": state,
             "created": T0, "updated": T0}
            for i, state in ((1, "AwaitingPayment"), (2, "InProgress"), (3, "InProgress"))])

    def move(session: Any, pk: int, state: str) -> None:
        session.execute(sa.update(payout).where(payout.c.id == pk).values(state=state))

    failures: list[BaseException] = []

    def second() -> None:
        try:
            with database.sessions() as s2, payout_write_lock(s2):
                move(s2, 3, "Completed")
                s2.commit()
        except BaseException as exc:
            failures.append(exc)

    other = threading.Thread(target=second)
    with database.sessions() as s1, payout_write_lock(s1):
        move(s1, 1, "Completed")
        other.start()
        other.join(0.5)  # T2 is now waiting
        move(s1, 2, "Cancelled")
        s1.commit()
    other.join(10)
    assert not other.is_alive()
    assert failures == []
    with engine.connect() as conn:
        states = dict(conn.execute(sa.text("SELECT id, state FROM payout")).all())
        assert states == {1: "Completed", 2: "Cancelled", 3: "Completed"}
        assert _rollups(conn) == _grouped(conn, postgresql)
