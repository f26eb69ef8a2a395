"""Counts for ``/metrics``, read from the database at scrape time.

Why from the database and not from in-process counters: several tracker processes (workers,
an ingest-only process) share one database, and each must report the same truth whichever
one Prometheus scrapes. Each number is one ``GROUP BY`` over an indexed or small column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col

from tracker.models import Issuer, Payout, PayoutState, StationOverview, Tap, TapOutcome, utcnow
from tracker.models.claim import Claim, ClaimState
from tracker.services import station_health


@dataclass(frozen=True)
class Counts:
    """Rows by label value; every known value is present (0 when there is none)."""

    taps_by_outcome: dict[str, int]
    claims_by_state: dict[str, int]
    payouts_by_state: dict[str, int]
    #: Every station with its latest heartbeat and state (no tap counts).
    stations: list[StationOverview] = field(default_factory=list)
    #: Issuer name → seconds since its last successful reconcile (None: never reconciled).
    reconcile_lag: dict[str, float | None] = field(default_factory=dict)


def _grouped(session: Session, column: sa.ColumnElement[str], known: list[str]) -> dict[str, int]:
    rows = session.execute(sa.select(column, sa.func.count()).group_by(column)).all()
    counts = dict.fromkeys(known, 0)
    for value, count in rows:
        counts[str(value)] = int(count)
    return counts


def reconcile_lag(session: Session, now: datetime) -> dict[str, float | None]:
    rows = session.execute(sa.select(col(Issuer.name), col(Issuer.last_reconciled))).all()
    return {
        str(name): None if last is None else max(0.0, (now - last).total_seconds())
        for name, last in rows
    }


def counts(session: Session, now: datetime | None = None) -> Counts:
    now = now or utcnow()
    return Counts(
        taps_by_outcome=_grouped(session, col(Tap.outcome), [o.value for o in TapOutcome]),
        claims_by_state=_grouped(session, col(Claim.state), [s.value for s in ClaimState]),
        payouts_by_state=_grouped(session, col(Payout.state), [s.value for s in PayoutState]),
        stations=station_health.overview(session, now=now, count_taps=False),
        reconcile_lag=reconcile_lag(session, now),
    )
