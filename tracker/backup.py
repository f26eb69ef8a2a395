"""``tracker db backup FILE``: a consistent copy of a live SQLite database, or the
``pg_dump`` command for PostgreSQL.

SQLite: the online backup API (``sqlite3.Connection.backup``) copies the database as of one
read transaction, so the tracker keeps serving and stations keep writing meanwhile (in WAL
mode a reader never blocks a writer). The copy is made in a private temporary file in the
target's directory, checked, switched to a rollback journal (one self-contained file, no
``-wal`` beside it) and only then put in place: a failed backup never leaves a half-written
FILE, and FILE is created ``0600`` (it holds token hashes and encrypted issuer secrets).

Restore: stop the tracker, copy the backup over the database file (removing any ``-wal`` /
``-shm`` files next to it), start the tracker.

PostgreSQL: a dump is ``pg_dump``'s job; :func:`pg_dump_command` says exactly what to run,
with the database name, host, port and user from the URL and never its password.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sqlite3
import tempfile
from pathlib import Path

from sqlalchemy.engine import make_url

from tracker.settings import TrackerSettings


class BackupRefused(RuntimeError):
    """The backup was not made; the message says why and what to do."""


def backup_sqlite(settings: TrackerSettings, target: Path, *, force: bool = False) -> int:
    """Copy the SQLite database of ``settings`` to ``target``; returns its size in bytes."""
    source = settings.sqlite_path()
    if source is None:
        raise BackupRefused("an in-memory database cannot be backed up; nothing is stored")
    if not source.is_file():
        raise BackupRefused(f"there is no database at {source}; check TRACKER_DATABASE_URL")
    if target.exists() and not force:
        raise BackupRefused(f"{target} exists; pass --force to overwrite it")
    if target.resolve() == source.resolve():
        raise BackupRefused(f"{target} is the database itself; pick another file")
    directory = target.parent if str(target.parent) else Path(".")
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=directory)
    os.close(fd)  # mkstemp made it 0600; sqlite3 writes into the empty file
    temp = Path(temp_name)
    try:
        _copy(source, temp, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
        if force:
            os.replace(temp, target)
        else:
            try:
                os.link(temp, target)  # fails if FILE appeared meanwhile: never overwritten
            except FileExistsError:
                raise BackupRefused(f"{target} exists; pass --force to overwrite it") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    return target.stat().st_size


def _copy(source: Path, temp: Path, *, busy_timeout_ms: int) -> None:
    src = sqlite3.connect(f"file:{source}?mode=rw", uri=True, timeout=busy_timeout_ms / 1000)
    try:
        dst = sqlite3.connect(temp)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
            verdict = dst.execute("PRAGMA integrity_check").fetchone()
            if verdict is None or verdict[0] != "ok":
                raise BackupRefused(f"the copy failed its integrity check ({verdict}); retry")
            dst.commit()
        finally:
            dst.close()
    finally:
        src.close()


def pg_dump_command(database_url: str, target: Path) -> str:
    """The ``pg_dump`` line for the PostgreSQL database of ``database_url`` (no password)."""
    url = make_url(database_url)
    parts = ["pg_dump", "--format=custom", f"--file={target}"]
    if url.host:
        parts.append(f"--host={url.host}")
    if url.port:
        parts.append(f"--port={url.port}")
    if url.username:
        parts.append(f"--username={url.username}")
    parts.append(url.database or "")
    return shlex.join(parts)
