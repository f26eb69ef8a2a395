"""The station daemon: watch readers, run the tap pipeline, give feedback, log one line per tap.

One thread per reader. Each loops: wait for a card → :meth:`TapPipeline.process` (read, verify,
decide, spool durably) → reader feedback → one log line → wait until the card leaves the field
(a card left on the reader is one tap) → ``debounce`` seconds of empty field → next tap.

Failure handling, each a log line and never a crash:

* card pulled mid-read (``CardRemoved``) or silent (``CardUnresponsive``): nothing recorded;
* a card that is not a Bolt Card (``UnsupportedCard``): one line, red feedback, nothing recorded;
* reader unplugged / pcscd restarted (``ReaderUnavailable``): logged once, retried with backoff,
  the reader reopened, and a line when it is back.

Stopping: :meth:`Daemon.stop` (SIGTERM/SIGINT, see :func:`station.app.run_station`) sets a flag;
the tap in flight completes (it is never interrupted between "spooled" and "feedback").
SIGKILL at any moment loses nothing acknowledged (the outbox commit precedes feedback) and
duplicates nothing on restart (idempotency keys).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from station.readers.base import (
    CardRemoved,
    CardUnresponsive,
    Reader,
    ReaderError,
    ReaderUnavailable,
)
from station.tap.pipeline import TapPipeline
from station.tap.result import TapResult, UnsupportedCard

log = logging.getLogger("station.daemon")
taplog = logging.getLogger("station.tap")


# -- logging --------------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time level msg key=value ...`` — the ``fields`` appended as key=value pairs."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            pairs = " ".join(f"{k}={'-' if v is None else v}" for k, v in fields.items())
            first, sep, rest = line.partition("\n")
            line = f"{first} {pairs}{sep}{rest}"
        return line


def setup_logging(log_format: str, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request URL at INFO; the tap line says everything we need.
    logging.getLogger("httpx").setLevel(logging.WARNING)


# -- the daemon -----------------------------------------------------------------------------------


@dataclass
class ReaderSlot:
    """A reader the daemon watches, and how to open it again after it vanished."""

    label: str
    open: Callable[[], Reader]
    reader: Reader | None = None
    down_since: float | None = None
    failures: int = 0


@dataclass
class DaemonStats:
    taps: int = 0
    accepted: int = 0
    refused: int = 0
    unsupported: int = 0
    removed_mid_read: int = 0
    reader_errors: int = 0
    #: Refused taps by reason (``counter_not_increasing``, ``unknown_card``…), for metrics.
    refused_by_reason: dict[str, int] = field(default_factory=dict)
    results: list[TapResult] = field(default_factory=list)


class Daemon:
    """Runs the pipeline on every reader until :meth:`stop` (or ``max_taps`` recorded taps)."""

    def __init__(
        self,
        pipeline: TapPipeline,
        slots: Sequence[ReaderSlot],
        *,
        debounce: float = 0.3,
        poll: float = 0.25,
        max_taps: int | None = None,
        keep_results: bool = False,
        on_tap: Callable[[TapResult], None] | None = None,
        retry_initial: float = 0.5,
        retry_max: float = 5.0,
    ) -> None:
        self.pipeline = pipeline
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.slots = list(slots)
        self.debounce = debounce
        self.poll = poll
        self.max_taps = max_taps
        self.keep_results = keep_results
        self.on_tap = on_tap
        self.stats = DaemonStats()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()

    def start(self) -> None:
        for slot in self.slots:
            t = threading.Thread(target=self._watch, args=(slot,), name=f"reader:{slot.label}",
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def join(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            t.join(left)

    def run(self) -> None:
        """Start the reader threads and block until stopped."""
        self.start()
        try:
            while not self._stop.wait(0.2):
                if not any(t.is_alive() for t in self._threads):
                    break
        finally:
            self._stop.set()
            self.join(timeout=10)

    # -- one reader -------------------------------------------------------------------------------

    def _watch(self, slot: ReaderSlot) -> None:
        backoff = self.retry_initial
        while not self._stop.is_set():
            try:
                reader = self._ensure_open(slot)
                link = reader.wait_for_card(self.poll)
            except ReaderUnavailable as exc:
                self._reader_down(slot, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.retry_max)
                continue
            except ReaderError as exc:
                log.warning("reader %s: %s", slot.label, exc)
                self._stop.wait(self.poll)
                continue
            backoff = self.retry_initial
            self._reader_up(slot)
            if link is None:
                continue
            try:
                self._tap(slot, reader, link)
                self._await_removal(slot, reader)
            except ReaderUnavailable as exc:
                self._reader_down(slot, exc)
            except ReaderError as exc:
                log.warning("reader %s: %s", slot.label, exc)
            if self.debounce and not self._stop.is_set():
                self._stop.wait(self.debounce)

    def _ensure_open(self, slot: ReaderSlot) -> Reader:
        if slot.reader is None:
            slot.reader = slot.open()
        return slot.reader

    def _reader_down(self, slot: ReaderSlot, exc: Exception) -> None:
        slot.failures += 1
        with self._lock:
            self.stats.reader_errors += 1
        if slot.down_since is None:
            slot.down_since = time.monotonic()
            log.warning("reader %s unavailable (%s); retrying until it is back", slot.label, exc,
                        extra={"fields": {"reader": slot.label, "event": "reader_down"}})
        # Reopen from scratch every few failures: a backend may hold a dead context.
        if slot.failures % 3 == 0 and slot.reader is not None:
            with contextlib.suppress(Exception):
                slot.reader.close()
            slot.reader = None

    def _reader_up(self, slot: ReaderSlot) -> None:
        if slot.down_since is not None:
            log.info("reader %s is back after %.1f s", slot.label,
                     time.monotonic() - slot.down_since,
                     extra={"fields": {"reader": slot.label, "event": "reader_up"}})
            slot.down_since = None
        slot.failures = 0

    def _tap(self, slot: ReaderSlot, reader: Reader, link: Any) -> None:
        try:
            result = self.pipeline.process(link, reader=slot.label)
        except CardRemoved:
            with self._lock:
                self.stats.removed_mid_read += 1
            log.info("card removed mid-read; nothing recorded",
                     extra={"fields": {"reader": slot.label, "event": "card_removed"}})
            return
        except CardUnresponsive as exc:
            log.info("card did not answer (%s); nothing recorded", exc,
                     extra={"fields": {"reader": slot.label, "event": "card_unresponsive"}})
            return
        except UnsupportedCard as exc:
            with self._lock:
                self.stats.unsupported += 1
            log.info("not a Bolt Card: %s; nothing recorded", exc.reason,
                     extra={"fields": {"reader": slot.label, "event": "unsupported_card",
                                       "apdus": exc.apdus}})
            _feedback(reader, False)
            return
        except ReaderError:
            raise
        except Exception:
            log.exception("tap failed on reader %s; nothing recorded", slot.label)
            return
        finally:
            with contextlib.suppress(Exception):
                link.close()
        _feedback(reader, result.accepted)
        fields = {"reader": slot.label, **result.log_fields()}
        if result.detail:
            fields["detail"] = result.detail
        taplog.info("tap", extra={"fields": fields})
        with self._lock:
            self.stats.taps += 1
            if result.accepted:
                self.stats.accepted += 1
            else:
                self.stats.refused += 1
                why = result.reason or "unknown"
                self.stats.refused_by_reason[why] = self.stats.refused_by_reason.get(why, 0) + 1
            if self.keep_results:
                self.stats.results.append(result)
            reached = self.max_taps is not None and self.stats.taps >= self.max_taps
        if self.on_tap is not None:
            self.on_tap(result)
        if reached:
            self._stop.set()

    def _await_removal(self, slot: ReaderSlot, reader: Reader) -> None:
        while not self._stop.is_set():
            if reader.wait_for_removal(self.poll):
                return


def _feedback(reader: Reader, accepted: bool) -> None:
    # Feedback is a courtesy: a reader without LEDs must not fail a tap.
    with contextlib.suppress(Exception):
        reader.feedback(accepted)
