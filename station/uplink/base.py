"""The seam between the station and the tracker: what an uplink does and what it answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from station.uplink.records import Record, TapRecord

PENDING: Final = "pending"
DELIVERED: Final = "delivered"  # 201 or 200 (already stored by us)
CONFLICT: Final = "conflict"  # 409: counter not increasing (replay, or another station won a race)
BLOCKED: Final = "blocked"  # 403: card blocked
# Any other 4xx but 401/408/429 (422 invalid, 413 too large, 400, 404…): the tracker will never
# store this body. The forwarder sets the record aside as *dead* and moves on to the next one.
REJECTED: Final = "rejected"
DEAD: Final = REJECTED  # the station's word for a rejected record (status, logs)
FINAL_STATES: Final = (DELIVERED, CONFLICT, BLOCKED, REJECTED)

#: Answers that are worth retrying although they are 4xx: a bad token (the operator fixes it;
#: dropping the record would lose a tap), a request timeout, rate limiting.
TRANSIENT_4XX: Final = frozenset({401, 408, 429})


class UplinkUnavailable(Exception):
    """The tracker cannot be reached right now (network, 5xx, 401/408/429, database locked).
    Retry later, in order; ``retry_after`` is the tracker's own ``Retry-After`` in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BatchUnsupported(Exception):
    """The tracker has no batch route (an older version): send records one by one."""


@dataclass(frozen=True)
class Delivery:
    """The tracker's final answer about one record."""

    state: str
    created: bool = False
    last_counter: int | None = None
    detail: str | None = None
    # The HTTP status it came with (None: direct database); informative, not part of the answer.
    status: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Heartbeat:
    """What the station says about itself every period (``POST /api/v1/stations/heartbeat``).

    Not an outbox record: only the latest one matters, so a failed heartbeat is simply
    replaced by the next one."""

    version: str
    started_at: str  # ISO 8601 with offset (the station's clock)
    uptime_s: int  # measured on the monotonic clock
    period_s: float
    outbox_pending: int
    outbox_dead: int
    readers_present: int
    readers_total: int
    problem: str | None = None

    def to_body(self) -> dict[str, object]:
        return {
            "version": self.version, "started_at": self.started_at, "uptime_s": self.uptime_s,
            "period_s": self.period_s, "outbox_pending": self.outbox_pending,
            "outbox_dead": self.outbox_dead, "readers_present": self.readers_present,
            "readers_total": self.readers_total,
            "problem": None if self.problem is None else self.problem[:300],
        }


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

    def send_batch(self, records: Sequence[TapRecord]) -> list[Delivery]:
        """Store taps in order (catching up after an outage); one answer per record, for a
        prefix of ``records`` at least one long (the rest is sent again). Raise
        :class:`UplinkUnavailable` like ``send``, or :class:`BatchUnsupported` when this uplink
        or the tracker behind it takes one record at a time (the forwarder then does that)."""
        ...

    def card_status(self, uid: str) -> CardStatus:
        """Current status of a card; raise :class:`UplinkUnavailable` when unreachable."""
        ...

    def send_heartbeat(self, beat: Heartbeat) -> None:
        """Tell the tracker the station is alive and how it is; raise
        :class:`UplinkUnavailable` when it did not take it (the next period tries again)."""
        ...

    def close(self) -> None: ...




class OneAtATime:
    """``send_batch`` for an uplink that only sends one record at a time."""

    def send_batch(self, records: Sequence[TapRecord]) -> list[Delivery]:
        raise BatchUnsupported("this uplink sends one record at a time")
