"""Listing and reading taps (newest first, keyset pages)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from tracker.models import Card, Tap, TapPublic
from tracker.services.filters import ListFilter, common_conditions, keyset_page, text_search
from tracker.services.sorting import order_by
from tracker.services.taps.rows import row_to_public, tap_select


def filtered_select(flt: ListFilter) -> sa.Select[Any]:
    """The tap rows matching ``flt`` in its order (shared by lists and exports)."""
    conditions = common_conditions(
        flt, card_pk=col(Tap.card_pk), station_pk=col(Tap.station_pk), moment=col(Tap.received_at)
    )
    if flt.outcome:
        conditions.append(col(Tap.outcome) == flt.outcome.value)
    if flt.q:
        conditions.append(
            text_search(
                flt.q,
                [
                    col(Card.uid),
                    col(Card.alias),
                    col(Tap.idempotency_key),
                    col(Tap.reason),
                    col(Tap.issuer_host),
                ],
            )
        )
    return tap_select().where(*conditions).order_by(*order_by(flt.order("taps")))


def list_taps(
    session: Session, *, flt: ListFilter | None = None, cursor: str | None = None, limit: int = 50
) -> tuple[list[TapPublic], str | None]:
    """One page of taps (newest first unless ``flt.sort`` says otherwise), and the cursor of
    the next page (None at the end)."""
    flt = flt or ListFilter()
    return keyset_page(
        session,
        filtered_select(flt),
        sort=flt.order("taps"),
        cursor=cursor,
        limit=limit,
        to_public=row_to_public,
    )


def get_tap(session: Session, *, tap_id: int) -> TapPublic | None:
    row = session.execute(tap_select().where(col(Tap.id) == tap_id)).first()
    return row_to_public(row) if row is not None else None


def taps_after(conn: sa.Connection, *, after_id: int, limit: int = 200) -> list[TapPublic]:
    """Taps with id > ``after_id`` in id order (the live event stream's rows)."""
    stmt = tap_select().where(col(Tap.id) > after_id).order_by(col(Tap.id)).limit(limit)
    return [row_to_public(r) for r in conn.execute(stmt)]
