"""Claims whose payout never comes: what reconciliation decides about them.

A station's claim (``sending``, ``claimed``, ``pending``, ``unknown``) normally meets the
issuer's payout within seconds: BTCPay creates the payout inside the LNURL callback. When a
full poll of every issuer on the claim's host (``includeCancelled=true``, so nothing is
hidden) has found no payout for it, and the claim is older than the grace period
(``claim_grace_seconds``), the claim's payout becomes:

- ``Failed``: every issuer on that host answered and none has a payout for it. The issuer
  never accepted the claim (or dropped it); the money did not move.
- ``Unknown``: an issuer on that host could not be asked (down, key revoked). We do not know,
  and say so, instead of leaving the payout "awaiting payment" forever or calling it failed.

Each change writes one payout history row with source ``poll`` and a sentence for the
operator, and notifies the live pages. The claim's own state is the station's record and is
left alone, so a payout that turns up later (a slow webhook, an issuer back online) still
links to the claim's row (it never got an ``issuer_payout_id``) and its state wins, as any
issuer record does; a Completed one also marks the still-open claim paid.

Claims are matched to issuers by host: the claim's ``issuer_host`` (the host of the LNURL
callback the card pointed to) against the host of the issuer's URL. When the tracker reaches
BTCPay under another name than the cards do, no issuer matches and such claims are only
counted (``claims_no_issuer`` in the reconcile report), never failed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from tracker.db import payout_write_lock
from tracker.events.notify import notify
from tracker.models import Claim, Payout, PayoutSource, PayoutState, PayoutStateChange
from tracker.services.payout_sync import OPEN_CLAIM_STATES

#: Rows settled per transaction (keeps SQLite's write lock short and memory flat).
BATCH = 500


@dataclass
class OverdueCounts:
    #: Open claims with no issuer payout yet, still inside the grace period.
    waiting: int = 0
    #: Payouts that became Failed / Unknown in this pass.
    failed: int = 0
    unknown: int = 0


def normalise_host(host: str) -> str:
    """A host as the station records it: IDNA ASCII, lower case, no trailing dot."""
    host = host.strip().rstrip(".").lower()
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def _age(delta: timedelta) -> str:
    minutes = max(0, int(delta.total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def _reason(target: PayoutState, names: Iterable[str], grace_s: int, age: timedelta,
            error: str | None) -> str:
    issuers = ", ".join(repr(n) for n in names)
    if target == PayoutState.Failed:
        return (
            f"No payout at issuer {issuers} for this claim {_age(age)} after it was made "
            f"(found by polling; grace {grace_s} s): the issuer never took the claim, so no "
            "money moved. If the issuer pays it later, that payout is linked here."
        )
    return (
        f"Issuer {issuers} could not be asked about this claim {_age(age)} after it was made "
        f"({error or 'no answer'}); whether it was paid is unknown. It is asked again on the "
        "next poll."
    )


def _open_unmatched(host: str) -> list[Any]:
    return [
        col(Claim.state).in_(OPEN_CLAIM_STATES),
        col(Payout.issuer_payout_id).is_(None),
        sa.func.lower(col(Claim.issuer_host)) == host,
    ]


def settle_overdue(
    session: Session,
    *,
    host: str,
    issuer_names: list[str],
    grace_s: int,
    now: datetime,
    error: str | None = None,
) -> OverdueCounts:
    """Settle the overdue open claims of ``host`` after a poll of all its issuers.

    ``error`` is None when every issuer on the host was listed completely in this pass (no
    payout means none exists: Failed), else why one could not be asked (Unknown). Commits."""
    host = normalise_host(host)
    cutoff = now - timedelta(seconds=max(0, grace_s))
    unmatched = _open_unmatched(host)
    counts = OverdueCounts()
    counts.waiting = int(
        session.execute(
            sa.select(sa.func.count())
            .select_from(Claim)
            .join(Payout, col(Payout.id) == col(Claim.payout_pk))
            .where(*unmatched, col(Claim.created) >= cutoff)
        ).scalar_one()
    )
    target = PayoutState.Failed if error is None else PayoutState.Unknown
    # Unknown never overwrites a Failed an earlier pass proved; Failed replaces anything.
    skip = [target.value]
    if error is not None:
        skip.append(PayoutState.Failed.value)
    while True:
        with payout_write_lock(session):
            rows = session.execute(
                sa.select(Payout, col(Claim.created))
                .join(Claim, col(Claim.payout_pk) == col(Payout.id))
                .where(*unmatched, col(Claim.created) < cutoff, col(Payout.state).not_in(skip))
                .order_by(col(Payout.id))
                .limit(BATCH)
            ).all()
            for payout, claimed_at in rows:
                assert payout.id is not None
                session.add(
                    PayoutStateChange(
                        payout_pk=payout.id,
                        from_state=payout.state,
                        to_state=target.value,
                        reason=_reason(target, issuer_names, grace_s, now - claimed_at, error),
                        source=PayoutSource.poll.value,
                        changed_at=now,
                    )
                )
                payout.state = target.value
                payout.updated = now
                session.add(payout)
                session.flush()
                notify(session, "payout", {"id": payout.id, "state": target.value})
            session.commit()
        if target == PayoutState.Failed:
            counts.failed += len(rows)
        else:
            counts.unknown += len(rows)
        if len(rows) < BATCH:
            return counts


def claims_without_issuer(session: Session, *, hosts: Iterable[str]) -> int:
    """Open unmatched claims whose host no configured issuer has: nobody can be asked."""
    known = sorted({normalise_host(h) for h in hosts})
    return int(
        session.execute(
            sa.select(sa.func.count())
            .select_from(Claim)
            .join(Payout, col(Payout.id) == col(Claim.payout_pk))
            .where(
                col(Claim.state).in_(OPEN_CLAIM_STATES),
                col(Payout.issuer_payout_id).is_(None),
                sa.func.lower(col(Claim.issuer_host)).not_in(known),
            )
        ).scalar_one()
    )
