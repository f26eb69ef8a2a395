"""Filters and keyset cursors shared by the list, export and page queries.

One :class:`ListFilter` feeds the JSON list, the CSV/JSON export and the pages, so an export
contains exactly the rows the operator filtered. Lists are newest first, ordered by
``(time, id)``; the cursor is the last row's ``(time, id)``, so a page never repeats or skips
a row even while new taps arrive (they land before the first page, not in the middle).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlmodel import Session, col

from tracker.models import Card, PayoutState, Station, TapOutcome
from tracker.models.checks import MAX_DB_INT, check_moment

T = TypeVar("T")


class InvalidCursor(ValueError):
    """The cursor was not produced by this API (or was edited); start again without one."""


@dataclass(frozen=True, kw_only=True)
class ListFilter:
    """Filters for taps and payouts. ``None`` means "do not filter on this"."""

    state: PayoutState | None = None  # payouts only
    outcome: TapOutcome | None = None  # taps only
    card: str | None = None  # card UID (uppercase hex)
    station: str | None = None  # station name
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    min_sats: int | None = None  # payouts only, inclusive
    max_sats: int | None = None  # payouts only, inclusive
    q: str | None = None  # free text, case-insensitive substring


def as_utc(value: datetime | None) -> datetime | None:
    """Naive datetimes from query strings are taken as UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def encode_cursor(moment: datetime, row_id: int) -> str:
    micros = int(moment.timestamp() * 1_000_000)
    raw = f"{micros}:{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        micros_text, id_text = raw.split(":", 1)
        if len(micros_text) > 20 or len(id_text) > 20:
            raise ValueError("too long")
        micros, row_id = int(micros_text), int(id_text)
        if not 0 <= row_id <= MAX_DB_INT:
            raise ValueError("id out of range")
        moment = check_moment(datetime.fromtimestamp(micros / 1_000_000, UTC))
    except (ValueError, binascii.Error, UnicodeDecodeError, OverflowError, OSError):
        raise InvalidCursor("invalid cursor; request the first page without one") from None
    return moment, row_id


def keyset_before(time_col: Any, id_col: Any, cursor: str | None) -> sa.ColumnElement[bool] | None:
    """``(time, id) < cursor`` as a row-value comparison (index range scan on both engines)."""
    if cursor is None:
        return None
    moment, row_id = decode_cursor(cursor)
    # Microsecond timestamps round-trip exactly; compare with the stored precision.
    return sa.tuple_(time_col, id_col) < sa.tuple_(
        sa.literal(moment, time_col.type), sa.literal(row_id, id_col.type)
    )


def like_pattern(text: str) -> str:
    """A LIKE pattern matching ``text`` literally anywhere (escape char ``\\``)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def common_conditions(
    flt: ListFilter, *, card_pk: Any, station_pk: Any, moment: Any
) -> list[sa.ColumnElement[bool]]:
    """The filters taps and payouts share: card (by UID), station (by name), since/until on
    the list's time column. Card and station go through a scalar subquery, so the list keeps
    walking its own ``(card/station, time, id)`` index."""
    conditions: list[sa.ColumnElement[bool]] = []
    if flt.card:
        conditions.append(
            card_pk
            == sa.select(col(Card.id)).where(col(Card.uid) == flt.card.upper()).scalar_subquery()
        )
    if flt.station:
        conditions.append(
            station_pk
            == sa.select(col(Station.id)).where(col(Station.name) == flt.station).scalar_subquery()
        )
    if flt.since:
        conditions.append(moment >= as_utc(flt.since))
    if flt.until:
        conditions.append(moment < as_utc(flt.until))
    return conditions


def text_search(q: str, columns: Sequence[Any]) -> sa.ColumnElement[bool]:
    """Case-insensitive substring ``q`` (taken literally) in any of ``columns``."""
    pattern = like_pattern(q)
    return sa.or_(*(column.ilike(pattern, escape="\\") for column in columns))


def keyset_page(
    session: Session,
    stmt: sa.Select[Any],
    *,
    moment: Any,
    row_id: Any,
    cursor: str | None,
    limit: int,
    to_public: Callable[[Any], T],
) -> tuple[list[T], str | None]:
    """One page of ``stmt`` (ordered newest first by ``(moment, row_id)``) after ``cursor``,
    and the cursor of the next page (None at the end). Raises :class:`InvalidCursor`."""
    after = keyset_before(moment, row_id, cursor)
    if after is not None:
        stmt = stmt.where(after)
    rows: Sequence[Any] = session.execute(stmt.limit(limit + 1)).all()
    items = [to_public(r) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor(getattr(last, moment.key), getattr(last, row_id.key))
    return items, next_cursor
