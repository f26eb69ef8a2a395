"""What the station can say about its own line to the tracker, in one value.

Why: the forwarder runs in the background; an operator (``station run`` logs, the POS
``/health`` route) needs to know whether records flow, how many wait, how many the tracker
refused for good (dead records, set aside so the line keeps flowing), and what is wrong now
(the tracker unreachable, the outbox disk full) — without reading logs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class StationHealth:
    """A snapshot of the forwarder and its outbox (:meth:`Forwarder.health`)."""

    online: bool  # the tracker answered the last attempt (or nothing was tried yet)
    forwarding: bool  # the forwarder thread is running
    pending: int | None  # records waiting (None: the outbox cannot be read)
    dead: int | None  # records the tracker refused for good (never sent again)
    delivered: int | None
    problem: str | None  # what is wrong now, in words; None when all is well
    problem_since: float | None  # time.time() when that problem started

    @property
    def ok(self) -> bool:
        """Records flow: the tracker answers and the outbox takes writes."""
        return self.online and self.forwarding and self.problem is None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}
