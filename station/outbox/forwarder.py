"""One thread that drains the outbox into an uplink, oldest record first, one at a time.

While the uplink is unavailable it retries the same record with exponential backoff
(``backoff_initial`` doubling up to ``backoff_max``); an append to the outbox cuts a wait short
so a fresh record goes out at once. Each answer is settled in the outbox (which records a
tracker's turn-down of an accepted tap itself). Callers that want the tracker's verdict for a
record they just spooled wait on :meth:`Forwarder.await_verdict`; nothing calls back upstream.
"""

from __future__ import annotations

import logging
import threading
import time

from station.outbox.outbox import Outbox
from station.uplink.base import BLOCKED, CONFLICT, REJECTED, Delivery, Uplink, UplinkUnavailable

log = logging.getLogger("station.outbox")


class Forwarder:
    """Drains ``outbox`` into ``uplink``. Start with :meth:`start`, end with :meth:`stop`."""

    def __init__(
        self,
        outbox: Outbox,
        uplink: Uplink,
        *,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
    ) -> None:
        self.outbox = outbox
        self.uplink = uplink
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._settled = threading.Condition()
        self._stopping = False
        self._online = True
        self._thread: threading.Thread | None = None

    @property
    def online(self) -> bool:
        """False while the last attempt failed with :class:`UplinkUnavailable`."""
        return self._online

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="outbox-forwarder", daemon=True)
        self._thread.start()

    def kick(self) -> None:
        """Try the next record now (cuts a backoff short)."""
        self.outbox.wake()

    def await_verdict(self, seq: int, timeout: float) -> Delivery | None:
        """Block until record ``seq`` is settled (its :class:`Delivery`) or ``timeout`` passes.

        ``None`` as soon as the tracker is found unreachable: the caller decides on local
        memory rather than waiting out the timeout.
        """
        deadline = time.monotonic() + timeout
        with self._settled:
            while True:
                found = self.outbox.delivery(seq)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or self._stopping or not self._online:
                    return None
                self._settled.wait(min(left, 0.25))

    def flush(self, timeout: float) -> bool:
        """Wait until nothing is pending (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        self.kick()
        while self.outbox.pending_count():
            if time.monotonic() >= deadline:
                return False
            with self._settled:
                self._settled.wait(0.05)
        return True

    def stop(self, flush_timeout: float = 0.0) -> int:
        """Try to flush for ``flush_timeout`` seconds, stop the thread; return what is left."""
        if flush_timeout > 0 and self._thread is not None:
            self.flush(flush_timeout)
        with self._settled:
            self._stopping = True
            self._settled.notify_all()
        self.outbox.wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return self.outbox.pending_count()

    def _sleep(self, seconds: float) -> None:
        if not self._stopping:
            self.outbox.wait_for_new(seconds)

    def _notify(self) -> None:
        with self._settled:
            self._settled.notify_all()

    def _run(self) -> None:
        backoff = self.backoff_initial
        while not self._stopping:
            entry = self.outbox.next_pending()
            if entry is None:
                self._sleep(1.0)
                continue
            self.outbox.note_attempt(entry.seq)
            try:
                delivery = self.uplink.send(entry.record)
            except UplinkUnavailable as exc:
                if self._online:
                    log.warning("tracker unreachable, spooling records locally: %s", exc)
                self._online = False
                self._notify()
                self._sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max)
                continue
            except Exception:  # a bug in an uplink must not kill the forwarder
                log.exception("uplink failed unexpectedly; will retry")
                self._online = False
                self._notify()
                self._sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max)
                continue
            if not self._online:
                log.info("tracker reachable again; forwarding %d spooled records",
                         self.outbox.pending_count())
            self._online = True
            backoff = self.backoff_initial
            self.outbox.settle(entry.seq, delivery)
            if delivery.state in (CONFLICT, BLOCKED, REJECTED):
                log.warning(
                    "tracker refused spooled %s %s: %s",
                    entry.record.kind,
                    _short_key(entry.record.idempotency_key),
                    delivery.detail or delivery.state,
                )
            self._notify()


def _short_key(key: str) -> str:
    uid, _, rest = key.partition(":")
    return f"{uid[:4]}…{uid[-2:]}:{rest}" if len(uid) > 8 else key
