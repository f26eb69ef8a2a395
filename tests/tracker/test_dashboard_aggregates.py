"""The dashboard's aggregates against sums computed here from the rows themselves, on SQLite
and PostgreSQL: the payout volume per UTC day, payout counts and amounts by state, taps per
station and the top cards, for all time (from the trigger-kept rollups, a deleted tap and
payout included) and for periods that start at a local midnight or mid-day (rollup days plus
raw edges)."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlmodel import SQLModel

import tracker.models  # noqa: F401  (the tables in SQLModel.metadata)
from tracker import zones
from tracker.db import make_sessionmaker
from tracker.models import FAILED_STATES, PENDING_STATES
from tracker.services import stats

T0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)


def _table(name: str) -> sa.Table:
    return SQLModel.metadata.tables[name]


def _seed(engine: Engine) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows through the typed tables (the app's own date handling), spread over ten days."""
    rnd = random.Random(5)
    with engine.begin() as conn:
        conn.execute(sa.insert(_table("station")), [
            {"id": i, "name": name, "created": T0}
            for i, name in ((1, "north"), (2, "south"), (3, "idle"))])
        conn.execute(sa.insert(_table("card")), [
            {"id": c, "uid": f"04AA{c:010X}", "status": "active", "first_seen": T0,
             "last_seen": T0} for c in range(1, 6)])
        taps, payouts = [], []
        for i in range(1, 121):
            # Times cluster around midnights, so day edges are exercised.
            when = T0 + timedelta(days=rnd.randint(0, 9), hours=rnd.choice([0, 0, 12, 23]),
                                  minutes=rnd.randint(0, 59), microseconds=rnd.randint(0, 999))
            taps.append({"id": i, "card_pk": rnd.randint(1, 5), "station_pk": rnd.choice([1, 2]),
                         "counter": i, "station_time": when, "received_at": when,
                         "outcome": "accepted", "idempotency_key": f"k{i}", "verified": True})
            payouts.append({"id": i, "tap_pk": i, "card_pk": taps[-1]["card_pk"],
                            "station_pk": 1, "amount_msat": rnd.randint(1, 500) * 1000,
                            "state": rnd.choice(["Completed", "Completed", "Failed",
                                                 "InProgress"]),
                            "created": when, "updated": when})
        for tap in taps:  # one by one: the rollup triggers fire per row
            conn.execute(sa.insert(_table("tap")), tap)
        conn.execute(sa.insert(_table("payout")), payouts)
        conn.execute(sa.text("DELETE FROM payout WHERE id = 8"))
        conn.execute(sa.text("DELETE FROM tap WHERE id = 8"))  # the rollup counts it down
    taps = [t for t in taps if t["id"] != 8]
    payouts = [p for p in payouts if p["id"] != 8]
    return taps, payouts


def _expected_volume(payouts: list[dict[str, Any]], since: datetime | None,
                     until: datetime | None) -> list[tuple[str, int, int]]:
    days: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for p in payouts:
        if (since and p["created"] < since) or (until and p["created"] >= until):
            continue
        day = days[p["created"].date().isoformat()]
        day[0] += 1
        day[1] += p["amount_msat"] // 1000 if p["state"] == "Completed" else 0
    return [(d, n, sats) for d, (n, sats) in sorted(days.items())]


def _periods() -> list[tuple[datetime | None, datetime | None]]:
    kolkata = ZoneInfo("Asia/Kolkata")  # +05:30: its midnight is mid-way through a UTC day
    return [
        (None, None),
        (T0 + timedelta(days=2, hours=13), None),
        (T0 + timedelta(days=2, hours=13), T0 + timedelta(days=7, hours=1)),
        (T0 + timedelta(days=3), T0 + timedelta(days=5)),  # UTC midnights: rollup only
        (T0 + timedelta(days=4, hours=1), T0 + timedelta(days=4, hours=3)),  # within a day
        (zones.day_start((T0 + timedelta(days=6)).date(), kolkata), None),
        (zones.day_start((T0 + timedelta(days=6)).date(), ZoneInfo("America/New_York")), None),
        (T0 + timedelta(days=30), None),
    ]


def test_volume_per_day_taps_per_station_and_top_cards(engine: Engine) -> None:
    taps, payouts = _seed(engine)
    since = T0 + timedelta(days=2, hours=13)
    with make_sessionmaker(engine)() as session:
        for start, end in _periods():
            assert stats.payout_volume_per_day(session, since=start, until=end) == (
                _expected_volume(payouts, start, end)), (start, end)
        for start, end in _periods():  # 'idle' has no taps: left out
            per_station = Counter(
                {1: "north", 2: "south"}[t["station_pk"]] for t in taps
                if (start is None or t["received_at"] >= start)
                and (end is None or t["received_at"] < end))
            expected = sorted(per_station.items(), key=lambda kv: (-kv[1], kv[0]))
            assert stats.taps_per_station(session, since=start, until=end) == expected
        for start, limit in ((since, 3), (None, 3), (None, 10)):
            completed: Counter[int] = Counter()
            for p in payouts:
                if p["state"] == "Completed" and (start is None or p["created"] >= start):
                    completed[p["card_pk"]] += p["amount_msat"]
            top = stats.top_cards(session, since=start, limit=limit)
            assert [(uid, sats) for uid, _alias, sats in top] == [
                (f"04AA{card:010X}", msat // 1000) for card, msat in completed.most_common(limit)
            ]


def test_dashboard_figures_by_state_for_any_period(engine: Engine) -> None:
    """Counts and paid/pending/failed amounts equal sums over the rows, for every period."""
    _taps, payouts = _seed(engine)
    with engine.begin() as conn:  # a webhook's changes: the rollup moves them between groups
        conn.execute(sa.text("UPDATE payout SET state = 'Completed' WHERE id IN (3, 4, 5)"))
        conn.execute(sa.text("UPDATE payout SET amount_msat = 777000 WHERE id = 6"))
        conn.execute(sa.text("UPDATE payout SET state = 'AwaitingPayment' WHERE id = 7"))
    for p in payouts:
        p["state"] = "Completed" if p["id"] in (3, 4, 5) else p["state"]
        p["amount_msat"] = 777000 if p["id"] == 6 else p["amount_msat"]
        p["state"] = "AwaitingPayment" if p["id"] == 7 else p["state"]
    with make_sessionmaker(engine)() as session:
        for start, end in _periods():
            chosen = [p for p in payouts if (start is None or p["created"] >= start)
                      and (end is None or p["created"] < end)]

            def of(states: tuple[str, ...], rows: list[dict[str, Any]] = chosen) -> list[int]:
                return [p["amount_msat"] for p in rows if p["state"] in states]

            figures = stats.dashboard_stats(session, since=start, until=end)
            assert figures.total_payouts == len(chosen)
            assert figures.total_amount_sats == sum(p["amount_msat"] for p in chosen) // 1000
            assert figures.completed_payouts == len(of(("Completed",)))
            assert figures.completed_amount_sats == sum(of(("Completed",))) // 1000
            pending = tuple(s.value for s in PENDING_STATES)
            failed = tuple(s.value for s in FAILED_STATES)
            assert (figures.pending_payouts, figures.pending_amount_sats) == (
                len(of(pending)), sum(of(pending)) // 1000), (start, end)
            assert (figures.failed_payouts, figures.failed_amount_sats) == (
                len(of(failed)), sum(of(failed)) // 1000), (start, end)
            by_state = Counter(p["state"] for p in chosen)
            assert {k: v for k, v in figures.payouts_by_state.items() if v} == dict(by_state)
