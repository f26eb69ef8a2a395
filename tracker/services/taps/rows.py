"""The one public shape of a tap (:class:`~tracker.models.TapPublic`) and the select behind it.

Every reader of taps - the API, the pages, the live event stream, the exports - builds its
rows from :func:`tap_select` and :func:`row_to_public`; the ingest builds its answer with
:func:`stored_public` from the same fields, so a tap looks the same wherever it shows up.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import col

from tracker.models import Card, Station, Tap, TapCreate, TapPublic
from tracker.services.filters import as_utc


def tap_columns() -> tuple[Any, ...]:
    return (
        col(Tap.id),
        col(Tap.idempotency_key),
        col(Card.uid).label("card_uid"),
        col(Card.card_id),
        col(Card.alias).label("card_alias"),
        col(Tap.counter),
        col(Tap.station_time),
        col(Tap.outcome),
        col(Tap.reason),
        col(Tap.issuer_host),
        col(Station.name).label("station"),
        col(Tap.received_at),
        col(Tap.station_pk),
        col(Tap.verified),
    )


def tap_select() -> sa.Select[Any]:
    return (
        sa.select(*tap_columns())
        .select_from(Tap)
        .join(Card, col(Card.id) == col(Tap.card_pk))
        .join(Station, col(Station.id) == col(Tap.station_pk))
    )


def row_to_public(row: Any) -> TapPublic:
    return TapPublic(
        id=row.id,
        idempotency_key=row.idempotency_key,
        card_uid=row.card_uid,
        card_id=row.card_id,
        card_alias=row.card_alias,
        counter=row.counter,
        station_time=row.station_time,
        outcome=row.outcome,
        reason=row.reason,
        issuer_host=row.issuer_host,
        station=row.station,
        received_at=row.received_at,
        verified=bool(row.verified),
    )


def stored_public(
    tap: TapCreate,
    *,
    tap_id: int,
    card_id: str | None,
    card_alias: str | None,
    station_name: str,
    received_at: datetime,
) -> TapPublic:
    """The answer for a tap just stored, built from the report (no read back); ``card_id``
    and ``card_alias`` are the card row's (the report's ``card_id`` wins when it has one)."""
    return TapPublic(
        id=tap_id,
        idempotency_key=tap.idempotency_key,
        card_uid=tap.card_uid,
        card_id=tap.card_id or card_id,
        card_alias=card_alias,
        counter=tap.counter,
        station_time=as_utc(tap.station_time) or tap.station_time,
        outcome=tap.outcome,
        reason=tap.reason,
        issuer_host=tap.issuer_host,
        station=station_name,
        received_at=received_at,
        verified=tap.verified,
    )
