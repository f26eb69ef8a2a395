"""Taps: recording (one entry point, :class:`TapRecorder`) and reading.

``record.py`` is the general path (any case, any database, in one ORM transaction),
``fast.py`` the per-database short path of the common case, ``batch.py`` many reports in one
request (``plan.py`` and ``bulk.py``: runs of the common case in one transaction each),
``rows.py`` the one public shape, ``query.py`` the lists.
"""

from tracker.services.taps.query import filtered_select, get_tap, list_taps, taps_after
from tracker.services.taps.record import (
    CardBlocked,
    CounterConflict,
    TapRefused,
    record_tap,
    tap_event,
)
from tracker.services.taps.recorder import TapRecorder
from tracker.services.taps.rows import row_to_public, stored_public, tap_select

__all__ = [
    "CardBlocked",
    "CounterConflict",
    "TapRecorder",
    "TapRefused",
    "filtered_select",
    "get_tap",
    "list_taps",
    "record_tap",
    "row_to_public",
    "stored_public",
    "tap_event",
    "tap_select",
    "taps_after",
]
