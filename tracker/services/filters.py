"""Filters and keyset cursors shared by the list, export and page queries.

One :class:`ListFilter` feeds the JSON list, the CSV/JSON export and the pages, so an export
contains exactly the rows the operator filtered, in the order the page showed. Lists are
newest first by default, ordered by ``(time, id)``; another sort (:mod:`sorting`) orders by
its index columns, ending with ``id``. The cursor is the last row's key, so a page never
repeats or skips a row even while new taps arrive.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlmodel import Session, col

from tracker.models import Card, PayoutState, Station, TapOutcome, UTCDateTime
from tracker.models.checks import MAX_DB_INT, check_moment
from tracker.services.sorting import Sort, keyset_keys, parse_sort

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
    sort: Sort | None = None  # None: the list's default order (newest first)

    def order(self, kind: str) -> Sort:
        return self.sort or parse_sort(kind, None, None)


def as_utc(value: datetime | None) -> datetime | None:
    """Naive datetimes from query strings are taken as UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def encode_cursor(values: Sequence[Any]) -> str:
    """The last row's sort key as an opaque token. ``(time, id)`` keeps its original short
    form (``micros:id``); other keys are a JSON list (times as microseconds)."""
    if len(values) == 2 and isinstance(values[0], datetime):
        raw = f"{_micros(values[0])}:{values[1]}"
    else:
        raw = json.dumps([_micros(v) if isinstance(v, datetime) else v for v in values])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_value(value: Any, column: Any) -> Any:
    if isinstance(column.type, UTCDateTime):
        if not isinstance(value, int) or isinstance(value, bool) or abs(value) > 10**17:
            raise ValueError("not a time")
        return check_moment(datetime.fromtimestamp(value / 1_000_000, UTC))
    if isinstance(getattr(column.type, "impl", column.type), sa.String):  # AutoString too
        # PostgreSQL refuses NUL in text: an edited cursor must be a 422, not a 500.
        if not isinstance(value, str) or len(value) > 100 or any(ord(c) < 32 for c in value):
            raise ValueError("not a sort value")
        return value
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_DB_INT:
        raise ValueError("not an id")
    return value


def decode_cursor(cursor: str, keys: Sequence[Any]) -> list[Any]:
    """The key values in ``cursor`` for ``keys``; :class:`InvalidCursor` for anything else
    (edited, or made for another sort)."""
    try:
        if len(cursor) > 400:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if raw.startswith("["):
            values = json.loads(raw)
        else:
            micros_text, id_text = raw.split(":", 1)
            if len(micros_text) > 20 or len(id_text) > 20:
                raise ValueError("too long")
            values = [int(micros_text), int(id_text)]
        if not isinstance(values, list) or len(values) != len(keys):
            raise ValueError("not this sort's cursor")
        return [_decode_value(v, k) for v, k in zip(values, keys, strict=True)]
    except (ValueError, binascii.Error, UnicodeDecodeError, OverflowError, OSError):
        raise InvalidCursor("invalid cursor; request the first page without one") from None


def keyset_after(keys: Sequence[Any], cursor: str | None, *, descending: bool) -> Any:
    """``(keys) < cursor`` (or ``>`` ascending) as a row-value comparison: an index range scan
    on both engines."""
    if cursor is None:
        return None
    values = decode_cursor(cursor, keys)
    # Microsecond timestamps round-trip exactly; compare with the stored precision.
    bound = sa.tuple_(*(sa.literal(v, k.type) for v, k in zip(values, keys, strict=True)))
    row = sa.tuple_(*keys)
    return row < bound if descending else row > bound


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
    sort: Sort | None = None,
    keys: Sequence[Any] = (),
    cursor: str | None,
    limit: int,
    to_public: Callable[[Any], T],
) -> tuple[list[T], str | None]:
    """One page of ``stmt`` after ``cursor``, and the cursor of the next page (None at the end).

    ``stmt`` is ordered by ``sort``'s keys (the sortable lists), or by ``keys`` newest first
    (a log with one fixed order, such as the audit log). Raises :class:`InvalidCursor`."""
    if sort is not None:
        keys, descending = keyset_keys(sort), sort.descending
    else:
        descending = True
    after = keyset_after(keys, cursor, descending=descending)
    if after is not None:
        stmt = stmt.where(after)
    rows: Sequence[Any] = session.execute(stmt.limit(limit + 1)).all()
    items = [to_public(r) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor([getattr(last, k.key) for k in keys])
    return items, next_cursor
