"""Filters and keyset cursors shared by the list, export and page queries.

One :class:`ListFilter` feeds the JSON list, the CSV/JSON export and F's pages, so an export
contains exactly the rows the operator filtered. Lists are newest first, ordered by
``(time, id)``; the cursor is the last row's ``(time, id)``, so a page never repeats or skips
a row even while new taps arrive (they land before the first page, not in the middle).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from tracker.models import PayoutState, TapOutcome


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
        micros, row_id = int(micros_text), int(id_text)
        moment = datetime.fromtimestamp(micros / 1_000_000, UTC)
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
