"""Sortable columns of the lists: an allow-list per list, each backed by an index.

Why an allow-list of indexed keys: the taps list must stay fast with a million rows, and a
keyset page (``WHERE key < cursor ORDER BY key LIMIT n``) is only cheap when an index gives
that order. So each sortable column names the index columns behind it, ending with ``id`` so
the order is total and a cursor never skips or repeats a row. Columns whose order would come
from another table (a card's alias, a station's name) are not sortable on taps and payouts:
no index orders them, and sorting a million joined rows per page is what this avoids.

Cards and stations are small tables paged by offset (or shown whole), so any of their own
columns can sort.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlmodel import col

from tracker.models import Card, Payout, Station, StationHeartbeat, Tap

#: (kind, column) → the ordered key columns and the direction a first click gives.
#: Times and amounts start with the largest; words start at A.
_KEYSET_SORTS: Final[dict[str, dict[str, tuple[tuple[Any, ...], bool]]]] = {
    "taps": {
        "time": ((col(Tap.received_at), col(Tap.id)), True),  # ix_tap_received
        "counter": ((col(Tap.counter), col(Tap.id)), True),  # ix_tap_counter (0010)
        "outcome": ((col(Tap.outcome), col(Tap.received_at), col(Tap.id)), False),
    },
    "payouts": {
        "time": ((col(Payout.created), col(Payout.id)), True),  # ix_payout_created
        "id": ((col(Payout.id),), True),
        "amount": ((col(Payout.amount_msat), col(Payout.id)), True),  # ix_payout_amount (0010)
        "state": ((col(Payout.state), col(Payout.created), col(Payout.id)), False),
    },
}

#: Small tables, paged by offset (cards) or shown whole (stations): (key, first direction).
_OFFSET_SORTS: Final[dict[str, dict[str, tuple[Any, bool]]]] = {
    "cards": {
        "card": (sa.func.coalesce(col(Card.alias), col(Card.uid)), False),
        "uid": (col(Card.uid), False),
        "status": (col(Card.status), False),
        "counter": (col(Card.last_counter), True),
        "first_seen": (col(Card.first_seen), True),
        "last_seen": (col(Card.last_seen), True),
    },
    "stations": {
        "name": (col(Station.name), False),
        "created": (col(Station.created), True),
        "last_seen": (col(Station.last_seen), True),
        # Only the health overview (station_health.overview) joins the heartbeat table.
        "heartbeat": (col(StationHeartbeat.received_at), True),
    },
}
_TIEBREAK: Final[dict[str, Any]] = {"cards": col(Card.id), "stations": col(Station.id)}

DEFAULTS: Final[dict[str, str]] = {
    "taps": "time",
    "payouts": "time",
    "cards": "last_seen",
    "stations": "name",
}


class UnknownSort(ValueError):
    """A ``sort`` or ``dir`` outside the allow-list; the message lists what is allowed."""

    def __init__(self, kind: str, value: str, allowed: list[str], *, what: str = "sort") -> None:
        value = value[:40]  # it is echoed back (pages, API): a bounded quote is enough
        self.kind, self.value, self.allowed, self.what = kind, value, allowed, what
        super().__init__(
            f"cannot {what} {kind} by {value!r}; use one of: {', '.join(allowed)}"
            if what == "sort"
            else f"dir must be one of: {', '.join(allowed)} (got {value!r})"
        )


@dataclass(frozen=True)
class Sort:
    """A checked sort: the column's public name and its direction."""

    kind: str
    column: str
    descending: bool

    @property
    def is_default(self) -> bool:
        return self == parse_sort(self.kind, None, None)

    @property
    def dir(self) -> str:
        return "desc" if self.descending else "asc"


def _sorts(kind: str) -> dict[str, tuple[Any, bool]]:
    return _KEYSET_SORTS.get(kind) or _OFFSET_SORTS[kind]


def allowed(kind: str) -> list[str]:
    return list(_sorts(kind))


def default_descending(kind: str, column: str) -> bool:
    return bool(_sorts(kind)[column][1])


def parse_sort(kind: str, sort: str | None, direction: str | None) -> Sort:
    """``?sort=…&dir=…`` checked against the allow-list of ``kind``; raises :class:`UnknownSort`."""
    column = sort or DEFAULTS[kind]
    if column not in allowed(kind):
        raise UnknownSort(kind, column, allowed(kind))
    if direction in (None, ""):
        return Sort(kind, column, default_descending(kind, column))
    if direction not in ("asc", "desc"):
        raise UnknownSort(kind, str(direction), ["asc", "desc"], what="dir")
    return Sort(kind, column, direction == "desc")


def keyset_keys(sort: Sort) -> tuple[Any, ...]:
    """The index columns that give ``sort``'s order (taps and payouts)."""
    return _KEYSET_SORTS[sort.kind][sort.column][0]


def order_by(sort: Sort) -> list[Any]:
    """ORDER BY clauses for ``sort``: every key in the same direction, so one index serves
    both directions (scanned backwards for the other)."""
    if sort.kind in _OFFSET_SORTS:
        key, tiebreak = _OFFSET_SORTS[sort.kind][sort.column][0], _TIEBREAK[sort.kind]
        # Empty values (no counter yet, never seen) go last either way, on both databases.
        first = key.desc() if sort.descending else key.asc()
        return [first.nulls_last(), tiebreak.desc() if sort.descending else tiebreak.asc()]
    return [k.desc() if sort.descending else k.asc() for k in keyset_keys(sort)]
