"""The dashboard's aggregates against sums computed here from the rows themselves, on SQLite
and PostgreSQL: the payout volume per UTC day (day ranges, and the grouped form used for long
periods), taps per station for all time (from the trigger-kept rollup, a deleted tap
included) and the top cards of a period."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from sqlmodel import SQLModel

import tracker.models  # noqa: F401  (the tables in SQLModel.metadata)
from tracker.db import make_sessionmaker
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


@pytest.mark.parametrize("ranged", [True, False])
def test_volume_per_day_taps_per_station_and_top_cards(
    engine: Engine, ranged: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not ranged:
        monkeypatch.setattr(stats, "RANGED_DAYS", 0)  # the grouped form for long periods
    taps, payouts = _seed(engine)
    since = T0 + timedelta(days=2, hours=13)
    until = T0 + timedelta(days=7, hours=1)
    with make_sessionmaker(engine)() as session:
        assert stats.payout_volume_per_day(session) == _expected_volume(payouts, None, None)
        assert stats.payout_volume_per_day(session, since=since) == _expected_volume(
            payouts, since, None)
        assert stats.payout_volume_per_day(session, since=since, until=until) == (
            _expected_volume(payouts, since, until))
        assert stats.payout_volume_per_day(session, since=T0 + timedelta(days=30)) == []
        per_station = Counter({1: "north", 2: "south"}[t["station_pk"]] for t in taps)
        expected = sorted(per_station.items(), key=lambda kv: (-kv[1], kv[0]))
        assert stats.taps_per_station(session) == expected  # rollup; 'idle' has none
        assert stats.taps_per_station(session, since=T0) == expected  # from the taps
        completed: Counter[int] = Counter()
        for p in payouts:
            if p["state"] == "Completed" and p["created"] >= since:
                completed[p["card_pk"]] += p["amount_msat"]
        top = stats.top_cards(session, since=since, limit=3)
        assert [(uid, sats) for uid, _alias, sats in top] == [
            (f"04AA{card:010X}", msat // 1000) for card, msat in completed.most_common(3)
        ]
