"""One snapshot of the station's health, the source of both the heartbeat and the metrics.

Why one snapshot: the tracker's stations page and the station's own ``/metrics`` must tell the
same story (outbox depth, dead records, readers), so both are built from this value.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata

from station.outbox.health import StationHealth
from station.uplink.base import Heartbeat


def station_version() -> str:
    """The installed package's version (``unknown`` when run from an uninstalled tree)."""
    try:
        return metadata.version("boltcard-station")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class Readers:
    present: int  # open and answering now
    total: int  # configured


class Vitals:
    """Reads the forwarder's health and the readers' state when asked; keeps the start time."""

    def __init__(
        self,
        health: Callable[[], StationHealth],
        readers: Callable[[], Readers],
        *,
        version: str | None = None,
    ) -> None:
        self.health = health
        self.readers = readers
        self.version = version or station_version()
        self.started_at = datetime.now(UTC)
        self._started = time.monotonic()

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self._started

    def heartbeat(self, period_s: float) -> Heartbeat:
        health = self.health()
        readers = self.readers()
        problem = health.problem
        if problem is None and readers.present < readers.total:
            problem = f"{readers.total - readers.present} of {readers.total} readers unavailable"
        return Heartbeat(
            version=self.version[:40],
            started_at=self.started_at.isoformat(),
            uptime_s=int(self.uptime_s),
            period_s=period_s,
            outbox_pending=health.pending or 0,
            outbox_dead=health.dead or 0,
            readers_present=readers.present,
            readers_total=readers.total,
            problem=problem,
        )
