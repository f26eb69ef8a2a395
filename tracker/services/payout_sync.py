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

from tracker.db import payout_write_lock
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


_PAYOUT = Payout.__table__  # type: ignore[attr-defined]
_HISTORY = PayoutStateChange.__table__  # type: ignore[attr-defined]
_DELIVERY = WebhookDelivery.__table__  # type: ignore[attr-defined]
#: Built once and fed parameter dicts: a ``.values(...)`` per call would make SQLAlchemy
#: build a cache key over every value, which cost more than the insert.
_INSERT_PAYOUT = sa.insert(_PAYOUT).returning(_PAYOUT.c.id)
_INSERT_HISTORY = sa.insert(_HISTORY)
_INSERT_DELIVERY = sa.insert(_DELIVERY)
_DONE_DELIVERIES = (
    sa.update(_DELIVERY)
    .where(_DELIVERY.c.id.in_(sa.bindparam("ids", expanding=True)))
    .values(pending=False)
)
_PROBE_STORED = sa.select(
    _PAYOUT.c.id, _PAYOUT.c.issuer_payout_id, _PAYOUT.c.revision, _PAYOUT.c.state,
    _PAYOUT.c.proof,
).where(
    _PAYOUT.c.issuer_pk == sa.bindparam("issuer"),
    _PAYOUT.c.issuer_payout_id.in_(sa.bindparam("ids", expanding=True)),
)
_PROBE_DIGEST = sa.select(_PAYOUT.c.id, _PAYOUT.c.bolt11_digest).where(
    _PAYOUT.c.bolt11_digest.in_(sa.bindparam("digests", expanding=True)),
    _PAYOUT.c.issuer_payout_id.is_(None),
)


def apply_payouts(
    session: Session,
    *,
    issuer_id: int,
    issuer_host: str | None,
    payouts: Sequence[GreenfieldPayout],
    source: PayoutSource,
    delivery_id: str | None = None,
    done_deliveries: Sequence[int] = (),
) -> SyncCounts:
    """Upsert a batch of issuer payouts in one transaction (commits). Idempotent.

    With ``delivery_id`` the webhook delivery is recorded in the same transaction, so a
    concurrent second copy of it fails as a whole (``IntegrityError``) and changes nothing.
    ``done_deliveries`` (queued deliveries' row ids) stop being pending in that transaction
    too, so a crash leaves them pending and they are fetched again."""
    with payout_write_lock(session):
        try:
            counts = _apply(session, issuer_id, issuer_host, payouts, source) if payouts else (
                SyncCounts()
            )
            if done_deliveries:
                session.connection().execute(
                    _DONE_DELIVERIES, {"ids": list(done_deliveries)}
                )
            if delivery_id is not None:
                session.connection().execute(
                    _INSERT_DELIVERY,
                    {
                        "issuer_pk": issuer_id,
                        "delivery_id": delivery_id,
                        "payout_id": payouts[0].id if payouts else None,
                        "received_at": utcnow(),
                    },
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
    conn = session.connection()
    # Probe with plain columns first; ORM rows are loaded only for those that change.
    known = {
        r.issuer_payout_id: r
        for r in conn.execute(_PROBE_STORED, {"issuer": issuer_id, "ids": list(unique)})
    }
    fresh = [gp for gp in unique.values() if gp.id not in known]
    by_digest_id: dict[str, int] = {}
    if fresh:
        digests = list({d for gp in fresh if (d := bolt11_digest(gp.destination))})
        if digests:
            for r in conn.execute(_PROBE_DIGEST, {"digests": digests}):
                by_digest_id[r.bolt11_digest] = r.id
    to_load: list[int] = []
    for gp in unique.values():
        r = known.get(gp.id)
        if r is not None and _changes(r, gp):
            to_load.append(r.id)
    to_load.extend(by_digest_id.values())
    rows: dict[int, Payout] = {}
    if to_load:
        rows = {
            row.id: row
            for row in session.execute(sa.select(Payout).where(col(Payout.id).in_(to_load)))
            .scalars()
            if row.id is not None
        }
    now = utcnow()
    for gp in unique.values():
        probe = known.get(gp.id)
        if probe is not None:
            if probe.revision is not None and gp.revision < probe.revision:
                counts.ignored_older += 1
            elif probe.id in rows and _update(session, rows[probe.id], gp, source, now):
                counts.updated += 1
            else:
                counts.unchanged += 1
            continue
        row_id = by_digest_id.pop(bolt11_digest(gp.destination) or "", None)
        row = rows.get(row_id) if row_id is not None else None
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


def _changes(probe: Any, gp: GreenfieldPayout) -> bool:
    """Whether ``gp`` would change the stored row ``probe`` (see :func:`_update`)."""
    if probe.revision is not None and gp.revision < probe.revision:
        return False
    if probe.revision != gp.revision or probe.state != gp.state:
        return True
    return gp.proof is not None and probe.proof != gp.proof


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


def _issuer_values(gp: GreenfieldPayout) -> dict[str, Any]:
    """The columns that are the issuer's record of the payout (``proof`` only when sent)."""
    values: dict[str, Any] = {
        "revision": gp.revision,
        "pull_payment_id": gp.pull_payment_id,
        "original_amount": gp.original_amount,
        "original_currency": gp.original_currency,
        "payout_amount": gp.payout_amount,
        "payout_currency": gp.payout_currency,
        "issuer_created": gp.date,
    }
    if gp.proof is not None:
        values["proof"] = gp.proof
    return values


def _proof_hash(gp: GreenfieldPayout) -> str | None:
    found = gp.proof_value("PaymentHash")
    return found.lower() if found and len(found) == 64 else None


def _issuer_fields(row: Payout, gp: GreenfieldPayout) -> None:
    for name, value in _issuer_values(gp).items():
        setattr(row, name, value)
    if row.payment_hash is None:
        row.payment_hash = _proof_hash(gp)


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
    """A payout on the store that no station claimed (yet): kept, shown, adoptable.

    Core inserts on the session's connection rather than ORM objects: this is the webhook's
    common path, and the unit-of-work flush cost more CPU than the rest of the store."""
    conn = session.connection()
    payout_id = conn.execute(
        _INSERT_PAYOUT,
        {
            "issuer_pk": issuer_id,
            "issuer_payout_id": gp.id,
            "amount_msat": _msat(gp),
            "bolt11": gp.destination,
            "bolt11_digest": bolt11_digest(gp.destination),
            "payment_hash": payment_hash_of(gp.destination) or _proof_hash(gp),
            "issuer_host": issuer_host,
            "state": gp.state,
            "created": gp.date or now,
            "updated": now,
            **_issuer_values(gp),
        },
    ).scalar_one()
    conn.execute(
        _INSERT_HISTORY,
        {
            "payout_pk": payout_id,
            "from_state": None,
            "to_state": gp.state,
            "reason": f"revision {gp.revision}",
            "source": source.value,
            "changed_at": now,
        },
    )
    notify(session, "payout", {"id": payout_id, "state": gp.state})


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
