"""Test plumbing shared by the station tests: waiting on conditions, and the vpcd reader name.

Every wait here polls a condition under a generous deadline instead of sleeping a fixed time:
on a loaded 2-core CI machine a daemon thread can lag by hundreds of milliseconds, and a fixed
sleep then turns into a flaky failure.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


def wait_until(cond: Callable[[], object], timeout: float = 15.0, step: float = 0.01) -> bool:
    """Poll ``cond`` until it is true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())


class RemovalWatch:
    """Counts the card removals a daemon has *seen*, across reader reopenings.

    A test that presents a card again must first know the daemon noticed the previous card
    leave, else the new presentation looks like the old card still lying on the reader. Wrap
    the reader a :class:`~station.daemon.ReaderSlot` opens with :meth:`wrap`, then call
    :meth:`wait_for_more` with the count read before the removal.
    """

    def __init__(self) -> None:
        self._seen = 0
        self._still_there = 0
        self._lock = threading.Lock()

    @property
    def still_there(self) -> int:
        """How often the daemon looked for a removal and found the card still in the field."""
        with self._lock:
            return self._still_there

    @property
    def seen(self) -> int:
        with self._lock:
            return self._seen

    def wrap(self, reader: Any) -> Any:
        return _Watched(reader, self)

    def watch_slot(self, slot: Any) -> None:
        """Wrap every reader ``slot`` opens from now on (before the daemon starts)."""
        opener = slot.open
        slot.open = lambda: self.wrap(opener())

    def wait_for_more(self, before: int, timeout: float = 15.0) -> bool:
        return wait_until(lambda: self.seen > before, timeout)

    def _saw_one(self) -> None:
        with self._lock:
            self._seen += 1

    def _saw_it_stay(self) -> None:
        with self._lock:
            self._still_there += 1


class _Watched:
    """A reader that reports to a :class:`RemovalWatch`; everything else goes to the reader."""

    def __init__(self, reader: Any, watch: RemovalWatch) -> None:
        self._reader = reader
        self._watch = watch

    def wait_for_removal(self, timeout: float) -> bool:
        gone = bool(self._reader.wait_for_removal(timeout))
        if gone:
            self._watch._saw_one()
        else:
            self._watch._saw_it_stay()
        return gone

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)


# -- the real pcscd + vpcd stack (the ``pcscd`` fixture is in tests/conftest.py) -----------------


def vpcd_reader_name(slot: str = "Virtual PCD 00 00", timeout: float = 15.0) -> str:
    """The full PC/SC name of the vpcd slot once pcscd lists it (after a start or restart)."""
    from station.readers.pcsc import list_reader_names

    found: list[str] = []

    def listed() -> bool:
        found[:] = [n for n in list_reader_names() if slot in n]
        return bool(found)

    if not wait_until(listed, timeout, step=0.1):
        raise AssertionError(f"{slot} not listed by pcscd")
    return found[0]
