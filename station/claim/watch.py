"""Settling charges from the merchant's own invoice: the source of truth for "was I paid?".

A claim the issuer answered OK (or "pending"), or one whose answer never came, is settled here:
a background thread asks the invoice source about each open charge until the invoice is paid
(``paid``) or past its expiry (``expired``). Lookups back off per charge (0.5 s doubling to
30 s), so a long outage of the invoice source costs a few requests a minute. The issuer is
never contacted again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from station.claim import charge as states
from station.claim.charge import Charge
from station.invoices.base import Invoice, InvoiceSource, InvoiceSourceError

log = logging.getLogger("station.charge")


@dataclass
class _Watched:
    charge: Charge
    invoice: Invoice
    due: float
    delay: float


class InvoiceWatcher:
    """Polls open invoices; ``settle(charge, state, reason)`` records the verdict."""

    def __init__(
        self,
        source: InvoiceSource | None,
        settle: Callable[[Charge, str, str | None], object],
        *,
        first_delay: float = 0.5,
        max_delay: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self._settle = settle
        self.first_delay = first_delay
        self.max_delay = max_delay
        self._clock = clock
        self._wall = wall
        self._cond = threading.Condition()
        self._items: dict[str, _Watched] = {}
        self._stopping = False
        self._thread: threading.Thread | None = None

    def watch(self, charge: Charge, invoice: Invoice) -> None:
        with self._cond:
            self._items[charge.id] = _Watched(charge, invoice, self._clock(), self.first_delay)
            self._cond.notify_all()

    def watching(self) -> int:
        with self._cond:
            return len(self._items)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="invoice-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def poll_once(self) -> int:
        """Look up every charge that is due now; returns how many were settled."""
        now = self._clock()
        with self._cond:
            due = [w for w in self._items.values() if w.due <= now]
        settled = 0
        for item in due:
            if self._check(item):
                settled += 1
                with self._cond:
                    self._items.pop(item.charge.id, None)
            else:
                item.delay = min(item.delay * 2, self.max_delay)
                item.due = self._clock() + item.delay
        return settled

    def _check(self, item: _Watched) -> bool:
        if item.charge.final:
            return True
        if self.source is None:
            return False
        try:
            status = self.source.lookup(item.invoice)
        except InvoiceSourceError as exc:
            log.warning("invoice lookup failed for charge %s: %s", item.charge.id[:8], exc)
            return False
        if status.state == "paid":
            self._settle(item.charge, states.PAID, None)
            return True
        expired = status.state == "expired" or self._wall() > item.invoice.expires_at.timestamp()
        if expired:
            self._settle(item.charge, states.EXPIRED, "the invoice expired unpaid")
            return True
        return False

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                wait = min((w.due for w in self._items.values()), default=None)
                now = self._clock()
                if wait is None or wait > now:
                    self._cond.wait(None if wait is None else min(wait - now, 1.0))
                    continue
            try:
                self.poll_once()
            except Exception:  # never let one bad lookup end the watching
                log.exception("invoice watcher step failed; retrying")
                time.sleep(1.0)
