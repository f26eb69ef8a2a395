"""Payouts (claims): what a station claimed after a tap, and the issuer payout it became.

A station reports the claim (``create_payout``) with the LNURL-withdraw details it saw; later
state changes (from the station, an operator, or reconciliation against BTCPay's Greenfield
payouts and webhooks) go through ``update_payout``, which writes one
:class:`~tracker.models.PayoutStateChange` row per change so the detail page can show the
history.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from tracker.db import payout_write_lock
from tracker.events.notify import notify
from tracker.models import (
    Card,
    Issuer,
    Payout,
    PayoutCreate,
    PayoutDetail,
    PayoutPublic,
    PayoutState,
    PayoutStateChange,
    PayoutStateChangePublic,
    PayoutUpdate,
    Station,
    Tap,
    TapOutcome,
    normalise_uid,
    utcnow,
)
from tracker.services import taps as tap_service
from tracker.services.claims import claim_of_payout
from tracker.services.filters import ListFilter, common_conditions, keyset_page, text_search
from tracker.services.sorting import order_by


class PayoutNotFound(LookupError):
    """No payout with that id (or it belongs to another station)."""


class PayoutConflict(ValueError):
    """The payout's idempotency key belongs to another station."""


class TapNotYours(ValueError):
    """The payout names a tap of another station, or a refused tap: a station may only
    attach payouts to its own accepted taps (else it could credit a claim to another)."""


class TapNotFound(LookupError):
    """The payout names a tap (by id or idempotency key) that is not stored; report the tap
    first (the station outbox sends taps before their payouts)."""


def _payout_columns() -> tuple[Any, ...]:
    return (
        col(Payout.id),
        col(Payout.tap_pk),
        col(Payout.amount_msat),
        col(Payout.bolt11),
        col(Payout.payment_hash),
        col(Payout.issuer_host),
        col(Payout.lnurl_k1),
        col(Payout.issuer_reason),
        col(Payout.issuer_payout_id),
        col(Payout.pull_payment_id),
        col(Payout.proof),
        col(Payout.state),
        col(Payout.created),
        col(Payout.updated),
        col(Payout.station_pk),
        col(Card.uid).label("card_uid"),
        col(Card.alias).label("card_alias"),
        col(Station.name).label("station"),
        col(Tap.idempotency_key).label("tap_idempotency_key"),
        col(Payout.revision),
        col(Payout.original_amount),
        col(Payout.original_currency),
        col(Payout.payout_amount),
        col(Payout.payout_currency),
        col(Issuer.name).label("issuer_name"),
    )


def _payout_select() -> sa.Select[Any]:
    return (
        sa.select(*_payout_columns())
        .select_from(Payout)
        .outerjoin(Card, col(Card.id) == col(Payout.card_pk))
        .outerjoin(Station, col(Station.id) == col(Payout.station_pk))
        .outerjoin(Tap, col(Tap.id) == col(Payout.tap_pk))
        .outerjoin(Issuer, col(Issuer.id) == col(Payout.issuer_pk))
    )


def _proof_hash(proof: Any) -> str | None:
    """The proof's payment hash (keys matched case-insensitively); the preimage is never
    read out of the proof for display, only its presence."""
    if isinstance(proof, dict):
        for key, value in proof.items():
            if isinstance(key, str) and key.lower() == "paymenthash" and isinstance(value, str):
                return value[:64]
    return None


def _proof_present(proof: Any) -> bool:
    if not isinstance(proof, dict):
        return False
    return any(
        isinstance(key, str) and key.lower() == "preimage" and bool(value)
        for key, value in proof.items()
    )


def row_to_public(row: Any) -> PayoutPublic:
    return PayoutPublic(
        id=row.id,
        tap_id=row.tap_pk,
        tap_idempotency_key=row.tap_idempotency_key,
        amount_msat=row.amount_msat,
        bolt11=row.bolt11,
        payment_hash=row.payment_hash,
        issuer_host=row.issuer_host,
        issuer_reason=row.issuer_reason,
        issuer=row.issuer_name,
        issuer_payout_id=row.issuer_payout_id,
        pull_payment_id=row.pull_payment_id,
        revision=row.revision,
        original_amount=row.original_amount,
        original_currency=row.original_currency,
        payout_amount=row.payout_amount,
        payout_currency=row.payout_currency,
        proof_payment_hash=_proof_hash(row.proof),
        proof_present=_proof_present(row.proof),
        from_station=row.tap_pk is not None,
        state=PayoutState(row.state),
        card_uid=row.card_uid,
        card_alias=row.card_alias,
        station=row.station,
        created=row.created,
        updated=row.updated,
    )


def payouts_by_ids(conn: sa.Connection, ids: list[int]) -> list[PayoutPublic]:
    """Payouts by id, in id order (the live event stream's rows)."""
    if not ids:
        return []
    stmt = _payout_select().where(col(Payout.id).in_(ids)).order_by(col(Payout.id))
    return [row_to_public(r) for r in conn.execute(stmt)]


def payouts_of_tap(session: Session, *, tap_id: int) -> list[PayoutPublic]:
    """The payouts a tap led to (its claim's payout; normally one)."""
    stmt = _payout_select().where(col(Payout.tap_pk) == tap_id).order_by(col(Payout.id))
    return [row_to_public(r) for r in session.connection().execute(stmt)]


def get_payout(session: Session, *, payout_id: int) -> PayoutPublic:
    row = session.execute(_payout_select().where(col(Payout.id) == payout_id)).first()
    if row is None:
        raise PayoutNotFound(f"no payout {payout_id}")
    return row_to_public(row)


def _find_by_key(session: Session, key: str) -> Any:
    return session.execute(_payout_select().where(col(Payout.idempotency_key) == key)).first()


def create_payout(
    session: Session,
    *,
    payout: PayoutCreate,
    station_id: int | None = None,
    station_name: str | None = None,
    card_uid: str | None = None,
) -> tuple[PayoutPublic, bool]:
    """Store a claim; return ``(payout, created)``. Commits.

    The card and station come from the linked tap; without a tap, ``card_uid`` and the
    reporting station are used. A retried report with the same ``idempotency_key`` from the
    same station returns the stored payout with ``created=False``.
    """
    with payout_write_lock(session):
        return _create_payout(
            session,
            payout=payout,
            station_id=station_id,
            station_name=station_name,
            card_uid=card_uid,
        )


def _create_payout(
    session: Session,
    *,
    payout: PayoutCreate,
    station_id: int | None,
    station_name: str | None,
    card_uid: str | None,
) -> tuple[PayoutPublic, bool]:
    if station_id is None and station_name:
        from tracker.services.stations import get_or_create_station_id

        station_id = get_or_create_station_id(session, name=station_name)
    if payout.idempotency_key:
        found = _find_by_key(session, payout.idempotency_key)
        if found is not None:
            if found.station_pk != station_id:
                raise PayoutConflict("idempotency key already used by another station")
            return row_to_public(found), False

    tap_row = None
    if payout.tap_id is not None:
        tap_row = session.execute(
            sa.select(col(Tap.id), col(Tap.card_pk), col(Tap.station_pk), col(Tap.outcome)).where(
                col(Tap.id) == payout.tap_id
            )
        ).first()
        if tap_row is None:
            raise TapNotFound(f"no tap with id {payout.tap_id}")
    elif payout.tap_idempotency_key:
        tap_row = session.execute(
            sa.select(col(Tap.id), col(Tap.card_pk), col(Tap.station_pk), col(Tap.outcome)).where(
                col(Tap.idempotency_key) == payout.tap_idempotency_key
            )
        ).first()
        if tap_row is None:
            raise TapNotFound("no tap with that idempotency key; report the tap first")

    if tap_row is not None and station_id is not None:
        if tap_row.station_pk != station_id:
            raise TapNotYours("that tap was reported by another station")
        if tap_row.outcome != TapOutcome.accepted:
            raise TapNotYours("that tap was refused; only an accepted tap can have a payout")
    card_pk = tap_row.card_pk if tap_row is not None else None
    if card_pk is None and card_uid:
        card_pk = session.execute(
            sa.select(col(Card.id)).where(col(Card.uid) == normalise_uid(card_uid))
        ).scalar()
    now = utcnow()
    values = payout.model_dump(
        exclude={"tap_idempotency_key", "tap_id", "state"},
    )
    try:
        inserted = session.execute(
            sa.insert(Payout)
            .values(
                **values,
                tap_pk=tap_row.id if tap_row is not None else None,
                card_pk=card_pk,
                station_pk=tap_row.station_pk if tap_row is not None else station_id,
                state=payout.state.value,
                created=now,
                updated=now,
            )
            .returning(col(Payout.id))
        )
        payout_id = int(inserted.scalar_one())
        session.add(
            PayoutStateChange(
                payout_pk=payout_id,
                from_state=None,
                to_state=payout.state.value,
                reason=payout.issuer_reason,
                source="station",
                changed_at=now,
            )
        )
        session.flush()
        public = get_payout(session, payout_id=payout_id)
        notify(
            session,
            "payout",
            {
                "id": payout_id,
                "uid": public.card_uid,
                "state": public.state.value,
                "amount_msat": public.amount_msat,
            },
        )
        session.commit()
    except IntegrityError:
        session.rollback()
        if payout.idempotency_key:
            found = _find_by_key(session, payout.idempotency_key)
            if found is not None and found.station_pk == station_id:
                return row_to_public(found), False
        raise
    return public, True


def update_payout(
    session: Session,
    *,
    payout_id: int,
    update: PayoutUpdate,
    station_id: int | None = None,
) -> PayoutPublic:
    """Apply a state/issuer change; a change of state adds a history row. Commits.

    With ``station_id``, only that station's payouts may be changed (PayoutNotFound
    otherwise, so one station cannot probe another's ids).
    """
    with payout_write_lock(session):
        return _update_payout(session, payout_id=payout_id, update=update, station_id=station_id)


def _update_payout(
    session: Session, *, payout_id: int, update: PayoutUpdate, station_id: int | None
) -> PayoutPublic:
    payout = session.get(Payout, payout_id, with_for_update=True)
    if payout is None or (station_id is not None and payout.station_pk != station_id):
        raise PayoutNotFound(f"no payout {payout_id}")
    now = utcnow()
    changes = update.model_dump(exclude_unset=True, exclude={"source"})
    new_state = changes.pop("state", None)
    for field, value in changes.items():
        setattr(payout, field, value)
    if new_state is not None and PayoutState(new_state).value != payout.state:
        session.add(
            PayoutStateChange(
                payout_pk=payout_id,
                from_state=payout.state,
                to_state=PayoutState(new_state).value,
                reason=update.issuer_reason,
                source=update.source,
                changed_at=now,
            )
        )
        payout.state = PayoutState(new_state).value
    payout.updated = now
    session.add(payout)
    session.flush()
    notify(session, "payout", {"id": payout_id, "state": payout.state})
    session.commit()
    return get_payout(session, payout_id=payout_id)


def payout_detail(session: Session, *, payout_id: int) -> PayoutDetail:
    public = get_payout(session, payout_id=payout_id)
    tap = tap_service.get_tap(session, tap_id=public.tap_id) if public.tap_id else None
    history_rows = (
        session.execute(
            sa.select(PayoutStateChange)
            .where(col(PayoutStateChange.payout_pk) == payout_id)
            .order_by(col(PayoutStateChange.changed_at), col(PayoutStateChange.id))
        )
        .scalars()
        .all()
    )
    history = [
        PayoutStateChangePublic(
            from_state=PayoutState(h.from_state) if h.from_state else None,
            to_state=PayoutState(h.to_state),
            reason=h.reason,
            source=h.source,
            changed_at=h.changed_at,
        )
        for h in history_rows
    ]
    claim = claim_of_payout(session, payout_id=payout_id)
    fields = public.model_dump(exclude={"amount_sats", "url"})
    return PayoutDetail(**fields, tap=tap, claim=claim, history=history)


def filtered_select(flt: ListFilter) -> sa.Select[Any]:
    """The payout rows matching ``flt`` in its order (shared by lists and exports)."""
    conditions = common_conditions(
        flt,
        card_pk=col(Payout.card_pk),
        station_pk=col(Payout.station_pk),
        moment=col(Payout.created),
    )
    if flt.state:
        conditions.append(col(Payout.state) == flt.state.value)
    if flt.min_sats is not None:
        conditions.append(col(Payout.amount_msat) >= flt.min_sats * 1000)
    if flt.max_sats is not None:
        conditions.append(col(Payout.amount_msat) < (flt.max_sats + 1) * 1000)
    if flt.q:
        conditions.append(
            text_search(
                flt.q,
                [
                    col(Card.uid),
                    col(Card.alias),
                    col(Payout.bolt11),
                    col(Payout.payment_hash),
                    col(Payout.issuer_payout_id),
                    col(Payout.issuer_reason),
                ],
            )
        )
    return _payout_select().where(*conditions).order_by(*order_by(flt.order("payouts")))


def list_payouts(
    session: Session, *, flt: ListFilter | None = None, cursor: str | None = None, limit: int = 50
) -> tuple[list[PayoutPublic], str | None]:
    """One page of payouts (newest first unless ``flt.sort`` says otherwise), and the next
    page's cursor (None at the end)."""
    flt = flt or ListFilter()
    return keyset_page(
        session,
        filtered_select(flt),
        sort=flt.order("payouts"),
        cursor=cursor,
        limit=limit,
        to_public=row_to_public,
    )
