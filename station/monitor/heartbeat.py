"""The heartbeat: every ``heartbeat`` seconds the station tells the tracker it is alive, with
its version, outbox depth, dead records, readers and uptime.

Not an outbox record: only the latest heartbeat means anything, so one that fails is logged
at debug level and replaced by the next one — it is never queued, retried or allowed to
delay a tap. The tracker calls the station offline after three periods without one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from station.uplink.base import Heartbeat, UplinkUnavailable

log = logging.getLogger("station.heartbeat")


@dataclass(frozen=True)
class HeartbeatStatus:
    """How the heartbeats have gone (for ``/metrics``)."""

    sent: int
    failed: int
    last_ok: float | None  # time.time() of the last one the tracker took
    last_error: str | None  # why the last one failed; None after a success


class HeartbeatSender:
    """A daemon thread: one heartbeat at start, then one per period until :meth:`stop`."""

    def __init__(
        self,
        send: Callable[[Heartbeat], None],
        beat: Callable[[float], Heartbeat],
        period_s: float,
    ) -> None:
        self._send = send
        self._beat = beat
        self.period_s = period_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sent = 0
        self._failed = 0
        self._last_ok: float | None = None
        self._last_error: str | None = None
        self._warned = False
        self._thread: threading.Thread | None = None

    def status(self) -> HeartbeatStatus:
        with self._lock:
            return HeartbeatStatus(self._sent, self._failed, self._last_ok, self._last_error)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def beat_once(self) -> bool:
        """Send one heartbeat now; True when the tracker took it."""
        try:
            self._send(self._beat(self.period_s))
        except UplinkUnavailable as exc:
            self._failed_with(str(exc))
            log.debug("heartbeat not taken: %s (next in %.0f s)", exc, self.period_s)
            return False
        except Exception as exc:  # a bug must not end the thread: say it once, keep beating
            self._failed_with(f"{type(exc).__name__}: {exc}")
            if not self._warned:
                self._warned = True
                log.warning("heartbeat failed unexpectedly; retrying every %.0f s",
                            self.period_s, exc_info=True)
            return False
        with self._lock:
            self._sent += 1
            self._last_ok = time.time()
            self._last_error = None
        return True

    def _failed_with(self, why: str) -> None:
        with self._lock:
            self._failed += 1
            self._last_error = why[:300]

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.beat_once()
            self._stop.wait(max(0.0, self.period_s - (time.monotonic() - started)))
