"""Claims: the LNURL-withdraw charges stations make after an accepted tap.

``record_claim`` is idempotent by ``claim_id``: the first post creates the claim (and the
payout it shows up as), a later post with another state moves it on, and a claim in a final
state (paid, refused, expired) never changes again - the station's outbox may deliver an old
state late. Every change writes a history row on the claim and, when the payout's state moves
with it, on the payout, and notifies the live pages. ``k1`` never reaches us: only its hash.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from tracker.db import payout_write_lock
from tracker.events.notify import notify
from tracker.models import (
    CLAIM_TO_PAYOUT,
    FINAL_CLAIM_STATES,
    Claim,
    ClaimCreate,
    ClaimPublic,
    ClaimState,
    ClaimStateChange,
    ClaimStateChangePublic,
    Payout,
    PayoutState,
    PayoutStateChange,
    Station,
    Tap,
    TapOutcome,
    utcnow,
)
from tracker.services import payout_sync  # module import: payout_sync -> events -> here

SOURCE = "station"


class ClaimRejected(ValueError):
    """The claim cannot be stored as sent (422); ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class ClaimNotFound(LookupError):
    """No claim with that id."""


def record_claim(
    session: Session, *, station_id: int, claim: ClaimCreate
) -> tuple[ClaimPublic, bool]:
    """Store or advance one claim; ``(claim, created)``. Commits; raises :class:`ClaimRejected`
    (nothing stored)."""
    for attempt in (1, 2):
        with payout_write_lock(session):  # a claim moves its linked payout
            try:
                created = _record(session, station_id=station_id, claim=claim)
                session.commit()
                break
            except ClaimRejected:
                session.rollback()
                raise
            except IntegrityError:
                # Two posts of a new claim at once: the loser updates the winner's row.
                session.rollback()
                if attempt == 2:
                    raise
    return get_claim(session, claim_id=claim.claim_id), created


def _record(session: Session, *, station_id: int, claim: ClaimCreate) -> bool:
    stored = session.execute(
        sa.select(Claim).where(col(Claim.claim_id) == claim.claim_id)
    ).scalar_one_or_none()
    if stored is None:
        _create(session, station_id=station_id, claim=claim)
        return True
    if stored.station_pk != station_id:
        raise ClaimRejected("claim_id", "this claim_id belongs to another station")
    tap_key = session.execute(
        sa.select(col(Tap.idempotency_key)).where(col(Tap.id) == stored.tap_pk)
    ).scalar_one()
    if tap_key != claim.tap_key:
        raise ClaimRejected("tap_key", "this claim was stored for another tap")
    _advance(session, stored, claim)
    return False


def _create(session: Session, *, station_id: int, claim: ClaimCreate) -> None:
    tap = session.execute(
        sa.select(col(Tap.id), col(Tap.card_pk), col(Tap.station_pk), col(Tap.outcome)).where(
            col(Tap.idempotency_key) == claim.tap_key
        )
    ).first()
    if tap is None or tap.station_pk != station_id or tap.outcome != TapOutcome.accepted:
        raise ClaimRejected(
            "tap_key", "tap_key must be the idempotency key of an accepted tap of this station"
        )
    now = utcnow()
    payout_state = CLAIM_TO_PAYOUT[claim.state].value
    adopted = payout_sync.adopt_for_claim(
        session, bolt11_text=claim.bolt11, payment_hash=claim.payment_hash
    )
    if adopted is not None:
        # The issuer's payout came first (webhook or poll): this claim takes it over; the
        # issuer's state stands, the tap, card and station come from the claim.
        payout = adopted
        payout.tap_pk = tap.id
        payout.card_pk = tap.card_pk
        payout.station_pk = station_id
        payout.idempotency_key = f"claim:{claim.claim_id}"
        payout.amount_msat = claim.amount_msat
        payout.issuer_host = claim.issuer_host
        payout.issuer_reason = claim.reason
        payout.payment_hash = payout.payment_hash or claim.payment_hash
        payout.updated = now
        payout_state = payout.state
    else:
        payout = Payout(
            tap_pk=tap.id,
            card_pk=tap.card_pk,
            station_pk=station_id,
            idempotency_key=f"claim:{claim.claim_id}",
            amount_msat=claim.amount_msat,
            bolt11=claim.bolt11,
            bolt11_digest=payout_sync.bolt11_digest(claim.bolt11),
            payment_hash=claim.payment_hash,
            issuer_host=claim.issuer_host,
            issuer_reason=claim.reason,
            state=payout_state,
            created=now,
            updated=now,
        )
    session.add(payout)
    session.flush()
    assert payout.id is not None
    row = Claim(
        claim_id=claim.claim_id,
        station_pk=station_id,
        tap_pk=tap.id,
        payout_pk=payout.id,
        state=claim.state.value,
        amount_msat=claim.amount_msat,
        memo=claim.memo,
        bolt11=claim.bolt11,
        payment_hash=claim.payment_hash,
        issuer_host=claim.issuer_host,
        k1_hash=claim.k1_hash,
        reason=claim.reason,
        station_time=claim.station_time,
        created=now,
        updated=now,
    )
    session.add(row)
    session.flush()
    assert row.id is not None
    if adopted is None:
        session.add(
            PayoutStateChange(
                payout_pk=payout.id,
                from_state=None,
                to_state=payout_state,
                reason=claim.reason,
                source=SOURCE,
                changed_at=now,
            )
        )
    session.add(
        ClaimStateChange(
            claim_pk=row.id,
            from_state=None,
            to_state=claim.state.value,
            reason=claim.reason,
            source=SOURCE,
            changed_at=now,
        )
    )
    completed = payout.state == PayoutState.Completed.value
    if adopted is not None and completed and claim.state not in FINAL_CLAIM_STATES:
        payout_sync.mark_claim_paid(session, payout.id, now)
    notify(session, "payout", {"id": payout.id, "state": payout_state})


def _advance(session: Session, stored: Claim, claim: ClaimCreate) -> None:
    """Move a stored claim to the posted state, unless it is final or already there."""
    if stored.state == claim.state.value or ClaimState(stored.state) in FINAL_CLAIM_STATES:
        return
    now = utcnow()
    assert stored.id is not None
    session.add(
        ClaimStateChange(
            claim_pk=stored.id,
            from_state=stored.state,
            to_state=claim.state.value,
            reason=claim.reason,
            source=SOURCE,
            changed_at=now,
        )
    )
    stored.state = claim.state.value
    stored.reason = claim.reason or stored.reason
    stored.bolt11 = stored.bolt11 or claim.bolt11
    stored.payment_hash = stored.payment_hash or claim.payment_hash
    stored.updated = now
    session.add(stored)
    if stored.payout_pk is None:
        return
    payout = session.get(Payout, stored.payout_pk)
    assert payout is not None
    new_state = CLAIM_TO_PAYOUT[claim.state].value
    if payout.issuer_pk is not None:
        # The issuer's own record decides the payout's state from now on.
        new_state = payout.state
    payout.issuer_reason = claim.reason or payout.issuer_reason
    payout.bolt11 = payout.bolt11 or claim.bolt11
    payout.bolt11_digest = payout.bolt11_digest or payout_sync.bolt11_digest(payout.bolt11)
    payout.payment_hash = payout.payment_hash or claim.payment_hash
    payout.updated = now
    if payout.state != new_state:
        session.add(
            PayoutStateChange(
                payout_pk=stored.payout_pk,
                from_state=payout.state,
                to_state=new_state,
                reason=claim.reason,
                source=SOURCE,
                changed_at=now,
            )
        )
        payout.state = new_state
    session.add(payout)
    session.flush()
    notify(session, "payout", {"id": stored.payout_pk, "state": new_state})


_CLAIM_SELECT = (
    sa.select(Claim, col(Tap.idempotency_key), col(Station.name))
    .join(Tap, col(Tap.id) == col(Claim.tap_pk))
    .join(Station, col(Station.id) == col(Claim.station_pk))
)


def _public(session: Session, found: sa.Row[tuple[Claim, str, str]]) -> ClaimPublic:
    row, tap_key, station = found
    history = session.execute(
        sa.select(ClaimStateChange)
        .where(col(ClaimStateChange.claim_pk) == row.id)
        .order_by(col(ClaimStateChange.id))
    ).scalars()
    return ClaimPublic(
        claim_id=row.claim_id,
        state=ClaimState(row.state),
        amount_msat=row.amount_msat,
        memo=row.memo,
        bolt11=row.bolt11,
        payment_hash=row.payment_hash,
        issuer_host=row.issuer_host,
        reason=row.reason,
        station_time=row.station_time,
        tap_key=tap_key,
        station=station,
        payout_id=row.payout_pk,
        created=row.created,
        updated=row.updated,
        history=[
            ClaimStateChangePublic(
                from_state=ClaimState(h.from_state) if h.from_state else None,
                to_state=ClaimState(h.to_state),
                reason=h.reason,
                source=h.source,
                changed_at=h.changed_at,
            )
            for h in history
        ],
    )


def get_claim(session: Session, *, claim_id: str) -> ClaimPublic:
    found = session.execute(_CLAIM_SELECT.where(col(Claim.claim_id) == claim_id)).first()
    if found is None:
        raise ClaimNotFound(f"no claim {claim_id}")
    return _public(session, found)


def claim_of_payout(session: Session, *, payout_id: int) -> ClaimPublic | None:
    found = session.execute(_CLAIM_SELECT.where(col(Claim.payout_pk) == payout_id)).first()
    return _public(session, found) if found is not None else None
