"""Following issuer payouts: upsert what Greenfield says about a payout and link it to the
claim that made it.

Linking: a Greenfield payout's ``destination`` is the BOLT11 the station submitted. We match
it, in order, to (1) the row already stored for this issuer payout id, (2) a claim's payout
row with the same BOLT11 text (by ``bolt11_digest``, an indexed SHA-256 of the lower-cased
text, so no invoice is decoded on the common path), (3) a claim's payout row with the same
payment hash (the BOLT11 decoded with the ``bolt11`` package). A payout no station claimed is
stored as its own row (``tap_pk`` NULL: "not from a station"); a claim that arrives later
adopts it (:func:`adopt_for_claim`). The claim's row is reused, never duplicated.

Ordering: webhooks can arrive out of order and a poll can read an older copy than a webhook
fetched, so an update whose ``revision`` is lower than the stored one is ignored. Every
change of state writes a history row with its source (station, webhook, poll). When the
issuer says ``Completed``, an open claim becomes ``paid`` (source webhook/poll).
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import bolt11
import sqlalchemy as sa
from sqlmodel import Session, col

from tracker.db import write_lock
from tracker.events.notify import notify
from tracker.issuers.btcpay.client import GreenfieldPayout
from tracker.models import (
    FINAL_CLAIM_STATES,
    Claim,
    ClaimState,
    ClaimStateChange,
    Payout,
    PayoutSource,
    PayoutState,
    PayoutStateChange,
    WebhookDelivery,
    utcnow,
)

log = logging.getLogger(__name__)

#: Claims the reconciler still looks for at the issuer.
OPEN_CLAIM_STATES = (
    ClaimState.sending.value,
    ClaimState.claimed.value,
    ClaimState.pending.value,
    ClaimState.unknown.value,
)


def bolt11_digest(text: str | None) -> str | None:
    """The indexed key of a BOLT11 text (case-insensitive, as BOLT11 is)."""
    if not text:
        return None
    return hashlib.sha256(text.strip().lower().encode("utf-8")).hexdigest()


@functools.lru_cache(maxsize=4096)
def payment_hash_of(destination: str | None) -> str | None:
    """The payment hash of a BOLT11 destination, or None when it is not one (an on-chain
    address, a malformed text). ~2 ms per call, hence the cache and the digest path first."""
    if not destination or len(destination) > 4000 or destination[:2].lower() != "ln":
        return None
    try:
        found = bolt11.decode(destination.strip()).payment_hash
    except Exception:  # bolt11 raises several unrelated types for malformed text
        return None
    return found.lower() if isinstance(found, str) and len(found) == 64 else None


def _msat(gp: GreenfieldPayout) -> int:
    """The payout's amount in msat from its BTC payout amount, else its SATS/BTC original."""
    for amount, currency in (
        (gp.payout_amount, gp.payout_currency),
        (gp.original_amount, gp.original_currency),
    ):
        if amount is None or (currency or "").upper() not in ("BTC", "SATS"):
            continue
        try:
            value = Decimal(amount)
        except InvalidOperation:
            continue
        scale = 100_000_000_000 if currency.upper() == "BTC" else 1000  # type: ignore[union-attr]
        msat = int(value * scale)
        if 0 <= msat < 21_000_000 * 100_000_000_000:
            return msat
    return 0


@dataclass
class SyncCounts:
    seen: int = 0
    created: int = 0
    linked: int = 0
    updated: int = 0
    unchanged: int = 0
    ignored_older: int = 0

    def add(self, other: SyncCounts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def apply_payouts(
    session: Session,
    *,
    issuer_id: int,
    issuer_host: str | None,
    payouts: Sequence[GreenfieldPayout],
    source: PayoutSource,
    delivery_id: str | None = None,
) -> SyncCounts:
    """Upsert a batch of issuer payouts in one transaction (commits). Idempotent.

    With ``delivery_id`` the webhook delivery is recorded in the same transaction, so a
    concurrent second copy of it fails as a whole (``IntegrityError``) and changes nothing."""
    with write_lock(session):
        try:
            counts = _apply(session, issuer_id, issuer_host, payouts, source)
            if delivery_id is not None:
                session.add(
                    WebhookDelivery(
                        issuer_pk=issuer_id,
                        delivery_id=delivery_id,
                        payout_id=payouts[0].id if payouts else None,
                    )
                )
            session.commit()
        except BaseException:
            session.rollback()
            raise
    return counts


def _apply(
    session: Session,
    issuer_id: int,
    issuer_host: str | None,
    payouts: Sequence[GreenfieldPayout],
    source: PayoutSource,
) -> SyncCounts:
    counts = SyncCounts(seen=len(payouts))
    unique = {gp.id: gp for gp in payouts}  # the last copy of an id in one batch wins
    stored: dict[str, Payout] = {
        row.issuer_payout_id: row
        for row in session.execute(
            sa.select(Payout).where(
                col(Payout.issuer_pk) == issuer_id,
                col(Payout.issuer_payout_id).in_(list(unique)),
            )
        ).scalars()
        if row.issuer_payout_id is not None
    }
    fresh = [gp for gp in unique.values() if gp.id not in stored]
    by_digest: dict[str, Payout] = {}
    if fresh:
        digests = {d for gp in fresh if (d := bolt11_digest(gp.destination))}
        if digests:
            for row in session.execute(
                sa.select(Payout).where(
                    col(Payout.bolt11_digest).in_(digests),
                    col(Payout.issuer_payout_id).is_(None),
                )
            ).scalars():
                if row.bolt11_digest:
                    by_digest[row.bolt11_digest] = row
    now = utcnow()
    for gp in unique.values():
        row = stored.get(gp.id)
        if row is not None:
            if row.revision is not None and gp.revision < row.revision:
                counts.ignored_older += 1
                continue
            if _update(session, row, gp, source, now):
                counts.updated += 1
            else:
                counts.unchanged += 1
            continue
        row = by_digest.pop(bolt11_digest(gp.destination) or "", None)
        if row is None:
            row = _claim_row_by_hash(session, payment_hash_of(gp.destination))
        if row is not None:
            row.issuer_pk = issuer_id
            row.issuer_payout_id = gp.id
            _update(session, row, gp, source, now, force=True)
            counts.linked += 1
            continue
        _create(session, issuer_id, issuer_host, gp, source, now)
        counts.created += 1
    return counts


def _claim_row_by_hash(session: Session, payment_hash: str | None) -> Payout | None:
    if payment_hash is None:
        return None
    return session.execute(
        sa.select(Payout)
        .where(
            col(Payout.payment_hash) == payment_hash,
            col(Payout.issuer_payout_id).is_(None),
            col(Payout.tap_pk).is_not(None),
        )
        .order_by(col(Payout.id))
        .limit(1)
    ).scalar_one_or_none()


def _issuer_fields(row: Payout, gp: GreenfieldPayout) -> None:
    row.revision = gp.revision
    row.pull_payment_id = gp.pull_payment_id
    row.original_amount = gp.original_amount
    row.original_currency = gp.original_currency
    row.payout_amount = gp.payout_amount
    row.payout_currency = gp.payout_currency
    row.issuer_created = gp.date
    if gp.proof is not None:
        row.proof = gp.proof
    proof_hash = gp.proof_value("PaymentHash")
    if row.payment_hash is None and proof_hash and len(proof_hash) == 64:
        row.payment_hash = proof_hash.lower()


def _update(
    session: Session,
    row: Payout,
    gp: GreenfieldPayout,
    source: PayoutSource,
    now: Any,
    *,
    force: bool = False,
) -> bool:
    """Apply ``gp`` to ``row``; True when anything an operator sees changed."""
    changed = force or row.revision != gp.revision or row.state != gp.state
    changed = changed or (gp.proof is not None and row.proof != gp.proof)
    if not changed:
        return False
    _issuer_fields(row, gp)
    assert row.id is not None
    if row.state != gp.state:
        session.add(
            PayoutStateChange(
                payout_pk=row.id,
                from_state=row.state,
                to_state=gp.state,
                reason=f"revision {gp.revision}",
                source=source.value,
                changed_at=now,
            )
        )
        row.state = gp.state
        if gp.state == PayoutState.Completed.value:
            mark_claim_paid(session, row.id, now, source=source)
    row.updated = now
    session.add(row)
    session.flush()
    notify(session, "payout", {"id": row.id, "state": row.state})
    return True


def mark_claim_paid(
    session: Session, payout_id: int, now: Any, *, source: PayoutSource | None = None
) -> None:
    """The issuer completed this payout: its open claim becomes ``paid``. ``source``
    defaults to whoever last moved the payout (webhook or poll)."""
    session.flush()
    if source is None:
        last = session.execute(
            sa.select(col(PayoutStateChange.source))
            .where(col(PayoutStateChange.payout_pk) == payout_id)
            .order_by(col(PayoutStateChange.id).desc())
            .limit(1)
        ).scalar_one_or_none()
        source = PayoutSource(last) if last in PayoutSource.__members__ else PayoutSource.poll
    claim = session.execute(
        sa.select(Claim).where(col(Claim.payout_pk) == payout_id)
    ).scalar_one_or_none()
    if claim is None or ClaimState(claim.state) in FINAL_CLAIM_STATES:
        return
    assert claim.id is not None
    session.add(
        ClaimStateChange(
            claim_pk=claim.id,
            from_state=claim.state,
            to_state=ClaimState.paid.value,
            reason="the issuer's payout is Completed",
            source=source.value,
            changed_at=now,
        )
    )
    claim.state = ClaimState.paid.value
    claim.updated = now
    session.add(claim)


def _create(
    session: Session,
    issuer_id: int,
    issuer_host: str | None,
    gp: GreenfieldPayout,
    source: PayoutSource,
    now: Any,
) -> None:
    """A payout on the store that no station claimed (yet): kept, shown, adoptable."""
    row = Payout(
        issuer_pk=issuer_id,
        issuer_payout_id=gp.id,
        amount_msat=_msat(gp),
        bolt11=gp.destination,
        bolt11_digest=bolt11_digest(gp.destination),
        payment_hash=payment_hash_of(gp.destination),
        issuer_host=issuer_host,
        state=gp.state,
        created=gp.date or now,
        updated=now,
    )
    _issuer_fields(row, gp)
    session.add(row)
    session.flush()
    assert row.id is not None
    session.add(
        PayoutStateChange(
            payout_pk=row.id,
            from_state=None,
            to_state=gp.state,
            reason=f"revision {gp.revision}",
            source=source.value,
            changed_at=now,
        )
    )
    notify(session, "payout", {"id": row.id, "state": row.state})


def adopt_for_claim(
    session: Session, *, bolt11_text: str | None, payment_hash: str | None
) -> Payout | None:
    """The issuer payout that arrived before its claim (no tap yet), if there is one."""
    digest = bolt11_digest(bolt11_text)
    conditions = []
    if digest:
        conditions.append(col(Payout.bolt11_digest) == digest)
    if payment_hash:
        conditions.append(col(Payout.payment_hash) == payment_hash)
    if not conditions:
        return None
    return session.execute(
        sa.select(Payout)
        .where(
            sa.or_(*conditions),
            col(Payout.tap_pk).is_(None),
            col(Payout.issuer_pk).is_not(None),
        )
        .order_by(col(Payout.id))
        .limit(1)
    ).scalar_one_or_none()
