"""The seam between the station and the tracker: what an uplink does and what it answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

from station.uplink.records import Record

PENDING: Final = "pending"
DELIVERED: Final = "delivered"  # 201 or 200 (already stored by us)
CONFLICT: Final = "conflict"  # 409: counter not increasing (replay, or another station won a race)
BLOCKED: Final = "blocked"  # 403: card blocked
REJECTED: Final = "rejected"  # 422: the tracker will never accept this body
FINAL_STATES: Final = (DELIVERED, CONFLICT, BLOCKED, REJECTED)


class UplinkUnavailable(Exception):
    """The tracker cannot be reached right now (network, 5xx, database locked). Retry later."""


@dataclass(frozen=True)
class Delivery:
    """The tracker's final answer about one record."""

    state: str
    created: bool = False
    last_counter: int | None = None
    detail: str | None = None


@dataclass(frozen=True)
class CardStatus:
    """What the tracker knows about a card: ``active|blocked|wiped|unknown`` and its counter."""

    status: str
    last_counter: int | None


class Uplink(Protocol):
    """A way into the tracker. ``send`` is idempotent per record (tap key, claim id + state)."""

    def send(self, record: Record) -> Delivery:
        """Store the record; raise :class:`UplinkUnavailable` for anything worth retrying."""
        ...

    def card_status(self, uid: str) -> CardStatus:
        """Current status of a card; raise :class:`UplinkUnavailable` when unreachable."""
        ...

    def close(self) -> None: ...
