"""One thread that drains the outbox into an uplink, oldest record first.

When more than one tap is pending in a row and the uplink takes batches, they go out in one
request (up to ``batch_size``, a claim ends the run so the order across kinds holds), and each
answer is settled as if it came alone; a tracker without the batch route gets records one by
one.

Three kinds of outcome, three rules:

* **an answer** (stored, already stored, a counter conflict, a blocked card) is settled in the
  outbox, which records a tracker's turn-down of an accepted tap itself;
* **a permanent refusal** (any 4xx but 401/408/429: ``REJECTED``) settles the record as *dead*:
  it is logged once (short key, kind, status, the tracker's reason), counted in
  :meth:`Forwarder.health`, never sent again, and the next record goes out — one body the
  tracker can never store must not jam the line;
* **a transient failure** (unreachable, 5xx, 503 + ``Retry-After``, 401/408/429) retries the
  same record, in order, with exponential backoff (``backoff_initial`` doubling up to
  ``backoff_max``, at least the tracker's ``Retry-After``).

The loop is supervised: a step that fails for any other reason (the outbox cannot be written:
disk full, I/O error; a bug in an uplink) is logged, reported by :meth:`Forwarder.health`, and
retried with backoff; the record stays pending, so nothing is forgotten (a record the tracker
already stored is answered "already stored" when sent again). An append cuts a wait short so a
fresh record goes out at once. Callers that want the tracker's verdict for a record they just
spooled wait on :meth:`Forwarder.await_verdict`; nothing calls back upstream.
"""

from __future__ import annotations

import logging
import threading
import time

from station.outbox.health import StationHealth
from station.outbox.outbox import Outbox, OutboxEntry, OutboxWriteError
from station.uplink.base import (
    BLOCKED,
    CONFLICT,
    DELIVERED,
    PENDING,
    REJECTED,
    BatchUnsupported,
    Delivery,
    Uplink,
    UplinkUnavailable,
)
from station.uplink.records import TAP

log = logging.getLogger("station.outbox")

#: How long to send one by one after a tracker could not take a batch.
BATCHES_OFF_S = 300.0

#: Longest wait a tracker's ``Retry-After`` can impose.
RETRY_AFTER_CEILING = 300.0


class Forwarder:
    """Drains ``outbox`` into ``uplink``. Start with :meth:`start`, end with :meth:`stop`."""

    def __init__(
        self,
        outbox: Outbox,
        uplink: Uplink,
        *,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
        batch_size: int = 500,
    ) -> None:
        self.outbox = outbox
        self.uplink = uplink
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.batch_size = batch_size
        self._batches_off_until = 0.0
        self._settled = threading.Condition()
        self._stopping = False
        self._online = True
        self._backoff = backoff_initial
        self._problem: str | None = None
        self._problem_since: float | None = None
        self._not_before = 0.0  # monotonic time before which the tracker asked not to be sent to
        self._thread: threading.Thread | None = None

    @property
    def online(self) -> bool:
        """False while the last attempt failed with :class:`UplinkUnavailable`."""
        return self._online

    def health(self, *, delivered: bool = True) -> StationHealth:
        """What the station can report about its line to the tracker (see
        :class:`~station.outbox.health.StationHealth`). ``delivered=False`` leaves the
        delivered count out (None) and reads only the index of waiting records: what a
        heartbeat or a scrape asks, however large the outbox grew."""
        try:
            if delivered:
                counts: dict[str, int] | None = self.outbox.counts()
            else:
                pending, dead = self.outbox.waiting()
                counts = {PENDING: pending, REJECTED: dead}
        except Exception:  # the outbox cannot even be read: say so, do not raise
            counts = None
        thread = self._thread
        return StationHealth(
            online=self._online,
            forwarding=thread is not None and thread.is_alive(),
            pending=None if counts is None else counts.get(PENDING, 0),
            dead=None if counts is None else counts.get(REJECTED, 0),
            delivered=None if counts is None or not delivered else counts.get(DELIVERED, 0),
            problem=self._problem or (None if counts is not None else "outbox unreadable"),
            problem_since=self._problem_since,
        )

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

    # -- the loop ---------------------------------------------------------------------------------

    def _sleep(self, seconds: float) -> None:
        """Wait ``seconds``; an append cuts it short, except during the tracker's own
        ``Retry-After`` (a fresh record would only meet the same busy tracker)."""
        if not self._stopping and seconds > 0:
            self.outbox.wait_for_new(seconds)
        while not self._stopping and (left := self._not_before - time.monotonic()) > 0:
            self.outbox.wait_for_new(left)

    def _notify(self) -> None:
        with self._settled:
            self._settled.notify_all()

    def _run(self) -> None:
        """The supervisor: every step's failure is logged, reported and retried."""
        while not self._stopping:
            try:
                wait = self._step()
            except Exception as exc:
                wait = self._step_failed(exc)
            self._sleep(wait)

    def _step(self) -> float:
        """Send the next record(s) and settle the answers; the seconds to wait before the next
        step (0: go on at once)."""
        entry = self.outbox.next_pending()
        if entry is None:
            self._recovered()
            return 1.0
        batch = self._batch_from(entry)
        try:
            if len(batch) > 1:
                self.outbox.note_attempts([e.seq for e in batch])
                answers = self._send_batch(batch)
            else:
                self.outbox.note_attempt(entry.seq)
                answers = [(entry, self.uplink.send(entry.record))]
        except UplinkUnavailable as exc:
            return self._unreachable(str(exc), exc.retry_after)
        except Exception:  # a bug in an uplink must not kill the forwarder
            log.exception("uplink failed unexpectedly; will retry")
            return self._unreachable("the uplink failed unexpectedly (see the log)", None)
        self._reachable()
        if len(answers) == 1:
            self.outbox.settle(answers[0][0].seq, answers[0][1])
        else:
            self.outbox.settle_many([(e.seq, d) for e, d in answers])
        for done, delivery in answers:
            self._log_answer(done, delivery)
        self._recovered()
        self._notify()
        return 0.0

    def _batch_from(self, entry: OutboxEntry) -> list[OutboxEntry]:
        """The oldest pending taps in a row (a claim ends the run: order across kinds holds),
        when the uplink takes batches; else just ``entry``."""
        if (
            self.batch_size < 2
            or entry.record.kind != TAP
            or time.monotonic() < self._batches_off_until
        ):
            return [entry]
        run = self.outbox.pending_run(TAP, self.batch_size)
        return run if run and run[0].seq == entry.seq else [entry]

    def _send_batch(self, batch: list[OutboxEntry]) -> list[tuple[OutboxEntry, Delivery]]:
        records = [e.record for e in batch]
        try:
            deliveries = self.uplink.send_batch(records)
        except BatchUnsupported as exc:
            log.info("sending records one by one for a while: %s", exc)
            self._batches_off_until = time.monotonic() + BATCHES_OFF_S
            return [(batch[0], self.uplink.send(batch[0].record))]
        return list(zip(batch, deliveries[: len(batch)], strict=False))

    def _log_answer(self, entry: OutboxEntry, delivery: Delivery) -> None:
        key = _short_key(entry.record.idempotency_key)
        status = f"HTTP {delivery.status}" if delivery.status is not None else "refused"
        if delivery.state == REJECTED:
            log.error(
                "tracker refused spooled %s %s for good (%s: %s); set aside as dead, "
                "forwarding the next record", entry.record.kind, key, status,
                delivery.detail or "no reason given",
                extra={"fields": {"event": "record_dead", "kind": entry.record.kind,
                                  "key": key, "status": delivery.status}},
            )
        elif delivery.state in (CONFLICT, BLOCKED):
            log.warning("tracker refused spooled %s %s: %s", entry.record.kind, key,
                        delivery.detail or delivery.state)

    def _unreachable(self, why: str, retry_after: float | None) -> float:
        if self._online:
            log.warning("tracker unreachable, spooling records locally: %s", why)
        self._online = False
        self._report(f"tracker unreachable: {why}")
        self._notify()
        wait = self._backoff
        if retry_after is not None:
            wait = max(wait, min(retry_after, RETRY_AFTER_CEILING))
            self._not_before = time.monotonic() + wait
        self._backoff = min(self._backoff * 2, self.backoff_max)
        return wait

    def _reachable(self) -> None:
        if not self._online:
            log.info("tracker reachable again; forwarding %d spooled records",
                     self.outbox.pending_count())
        self._online = True
        self._backoff = self.backoff_initial

    def _step_failed(self, exc: Exception) -> float:
        """Anything but the uplink's answer failed (mostly: the outbox cannot be written)."""
        why = str(exc) or type(exc).__name__
        if self._problem != why:
            log.error("forwarder step failed, retrying with backoff (records stay pending): %s",
                      why, exc_info=not isinstance(exc, OSError | OutboxWriteError))
        self._report(why)
        self._notify()
        wait = self._backoff
        self._backoff = min(self._backoff * 2, self.backoff_max)
        return wait

    def _report(self, problem: str) -> None:
        if problem != self._problem:
            self._problem = problem
            self._problem_since = time.time()

    def _recovered(self) -> None:
        if self._problem is not None and self._online:
            log.info("forwarder recovered (was: %s)", self._problem)
            self._problem = None
            self._problem_since = None
            self._backoff = self.backoff_initial


def _short_key(key: str) -> str:
    uid, _, rest = key.partition(":")
    return f"{uid[:4]}…{uid[-2:]}:{rest}" if len(uid) > 8 else key
