"""Tap counts from the daily rollup equal a plain COUNT(*) for any period, whatever writes."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import Engine

from tracker.db import make_sessionmaker
from tracker.models import Card, Station, Tap
from tracker.services.stats import count_taps

T0 = datetime(2026, 3, 10, 0, 0, tzinfo=UTC)


def _seed(engine: Engine) -> list[datetime]:
    rnd = random.Random(5)
    times = sorted(T0 + timedelta(seconds=rnd.randint(0, 6 * 86400)) for _ in range(400))
    times += [T0, T0 + timedelta(days=2), T0 + timedelta(days=3, microseconds=1)]  # edges
    with engine.begin() as conn:
        conn.execute(
            sa.insert(Station), [{"id": i, "name": f"s{i}", "created": T0} for i in (1, 2)]
        )
        conn.execute(
            sa.insert(Card),
            [
                {
                    "id": 1,
                    "uid": "04AABBCCDDEE11",
                    "status": "active",
                    "first_seen": T0,
                    "last_seen": T0,
                }
            ],
        )
        conn.execute(
            sa.insert(Tap),
            [
                {
                    "card_pk": 1,
                    "station_pk": 1 + n % 2,
                    "counter": n,
                    "station_time": t,
                    "received_at": t,
                    "outcome": "refused" if n % 5 == 0 else "accepted",
                    "idempotency_key": f"k{n}",
                }
                for n, t in enumerate(times)
            ],
        )
    return times


def _direct(engine: Engine, since: datetime | None, until: datetime | None) -> int:
    """Independent count in Python over the stored timestamps read back raw."""
    with engine.connect() as conn:
        stamps = [r[0] for r in conn.execute(sa.select(Tap.received_at))]
    return sum(1 for t in stamps if (since is None or t >= since) and (until is None or t < until))


def _periods() -> list[tuple[datetime | None, datetime | None]]:
    day = timedelta(days=1)
    points = [
        None,
        T0 - day,
        T0,
        T0 + timedelta(hours=5, minutes=7),
        T0 + day,
        T0 + 2 * day + timedelta(seconds=1),
        T0 + 3 * day,
        T0 + 3 * day + timedelta(microseconds=1),
        T0 + timedelta(days=4, hours=23),
        T0 + 9 * day,
    ]
    return [(a, b) for a in points for b in points]


def test_count_taps_matches_direct_count_for_every_period(engine: Engine) -> None:
    _seed(engine)
    with make_sessionmaker(engine)() as session:
        for since, until in _periods():
            assert count_taps(session, since=since, until=until) == _direct(engine, since, until), (
                since,
                until,
            )


def test_rollup_follows_updates_and_deletes(engine: Engine) -> None:
    _seed(engine)
    with engine.begin() as conn:
        conn.execute(sa.update(Tap).where(Tap.id <= 50).values(received_at=T0 - timedelta(days=30)))
        conn.execute(sa.delete(Tap).where(Tap.id > 350))
    with engine.connect() as conn:
        rolled = conn.execute(
            sa.text("SELECT COALESCE(SUM(taps), 0) FROM tap_daily_count")
        ).scalar_one()
        total = conn.execute(sa.text("SELECT COUNT(*) FROM tap")).scalar_one()
    assert rolled == total == 350
    with make_sessionmaker(engine)() as session:
        for since, until in _periods()[::3]:
            assert count_taps(session, since=since, until=until) == _direct(engine, since, until)
