"""Opening the outbox file, and refusing one that is not ours.

Why: the outbox is also the station's replay memory (the last accepted counter per card). A
file that was truncated to zero bytes, replaced by some other SQLite database, or corrupted
would otherwise either crash the daemon with a traceback or — worse — silently start empty,
so the station would accept replays of older taps while offline. Such a file is refused with
:class:`OutboxUnusable` (one line: the file and what to do), unless the operator asks to start
fresh; then the file is moved aside (kept for inspection, never deleted) and a new outbox
begins. A good outbox is opened as usual whatever ``fresh`` says, so the setting is safe to
leave on.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

log = logging.getLogger("station.outbox")

#: How ``station run`` is told to start fresh (the CLI flag and the setting).
FRESH_HINT = "start with --fresh-outbox (or STATION_FRESH_OUTBOX=1) to set it aside and begin " \
    "an empty one"


class OutboxUnusable(Exception):
    """The outbox file cannot be used as it is; the message names it and says what to do."""


def connect(path: Path, *, fresh: bool) -> sqlite3.Connection:
    """A connection on an outbox file that is ours (or new); :class:`OutboxUnusable` if not.
    With ``fresh``, an unusable file is set aside and a new one is opened instead."""
    if str(path) == ":memory:":
        return _connect(path)
    try:
        problem = _problem(path)
    except OutboxUnusable:
        if not fresh:
            raise
        problem = "unusable"
    if problem is None:
        return _connect(path)
    if not fresh:
        raise OutboxUnusable(
            f"outbox {path} {problem}: the replay memory it held is gone; {FRESH_HINT}"
        )
    aside = set_aside(path)
    log.warning("outbox %s %s; moved it to %s and started an empty outbox (replays of older "
                "taps cannot be refused offline until the tracker is reached)",
                path, problem, aside)
    return _connect(path)


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=5000")
    except sqlite3.Error:
        db.close()
        raise
    return db


def _problem(path: Path) -> str | None:
    """Why an existing file is not an outbox of ours (None: it is, or it does not exist yet).
    Raises :class:`OutboxUnusable` for a file SQLite cannot read at all."""
    if not path.exists():
        return None
    if path.stat().st_size == 0:
        return "is empty (0 bytes)"
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            check = db.execute("PRAGMA quick_check").fetchone()
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise OutboxUnusable(
            f"outbox {path} is unreadable ({exc}); move it aside to keep it for inspection, "
            f"or {FRESH_HINT}"
        ) from None
    if check is None or check[0] != "ok":
        raise OutboxUnusable(
            f"outbox {path} is corrupt (integrity check: {check[0] if check else '?'}); "
            f"copy out what you need with `sqlite3 {path} .recover`, then {FRESH_HINT}"
        )
    if tables and "outbox" not in tables:
        return "is not a station outbox (some other SQLite database)"
    return None  # ours, or a file with no tables yet (a first start that stopped early)


def set_aside(path: Path) -> Path:
    """Rename the file (and its WAL and shared-memory files) to ``<name>.unusable-<time>``."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside = path.with_name(f"{path.name}.unusable-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        src = path.with_name(path.name + suffix)
        if src.exists():
            src.rename(aside.with_name(aside.name + suffix))
    return aside
