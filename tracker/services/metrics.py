"""Counts for ``/metrics``, read from the database at scrape time.

Why from the database and not from in-process counters: several tracker processes (workers,
an ingest-only process) share one database, and each must report the same truth whichever
one Prometheus scrapes. Each number is one ``GROUP BY`` over an indexed or small column.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session, col

from tracker.models import Payout, PayoutState, Tap, TapOutcome
from tracker.models.claim import Claim, ClaimState


@dataclass(frozen=True)
class Counts:
    """Rows by label value; every known value is present (0 when there is none)."""

    taps_by_outcome: dict[str, int]
    claims_by_state: dict[str, int]
    payouts_by_state: dict[str, int]


def _grouped(session: Session, column: sa.ColumnElement[str], known: list[str]) -> dict[str, int]:
    rows = session.execute(sa.select(column, sa.func.count()).group_by(column)).all()
    counts = dict.fromkeys(known, 0)
    for value, count in rows:
        counts[str(value)] = int(count)
    return counts


def counts(session: Session) -> Counts:
    return Counts(
        taps_by_outcome=_grouped(session, col(Tap.outcome), [o.value for o in TapOutcome]),
        claims_by_state=_grouped(session, col(Claim.state), [s.value for s in ClaimState]),
        payouts_by_state=_grouped(session, col(Payout.state), [s.value for s in PayoutState]),
    )
