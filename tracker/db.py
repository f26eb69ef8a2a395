"""Engine factory, sessions and the "is the schema migrated?" check.

SQLite (one shop, one file) runs in WAL mode so the operator pages can read while a station
writes, with foreign keys on (SQLite leaves them off by default) and a busy timeout so a writer
waits for the lock instead of failing at once. PostgreSQL (a chain of shops) goes through
psycopg 3.

Nothing here runs at import time: ``make_engine(settings)`` is called by ``create_app`` or the
CLI, once per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import threading
import weakref
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from tracker.settings import TrackerSettings, normalise_database_url


class SchemaNotCurrentError(RuntimeError):
    """The database schema is missing or older than this code; the message says what to run."""


def make_engine(settings: TrackerSettings | str, **kwargs: Any) -> Engine:
    """Create the engine for ``settings.database_url`` (or a URL string)."""
    if isinstance(settings, str):
        url = normalise_database_url(settings)
        busy_ms = 10_000
        pool_size = 10
    else:
        url = settings.database_url
        busy_ms = settings.sqlite_busy_timeout_ms
        pool_size = settings.pool_size

    if url.startswith("sqlite"):
        _ensure_sqlite_dir(url)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": busy_ms / 1000},
            **kwargs,
        )
        _install_sqlite_pragmas(engine, busy_ms)
        return engine

    kwargs.setdefault("pool_size", pool_size)
    kwargs.setdefault("max_overflow", pool_size)
    # No pre-ping: it is a round trip per checkout, as many as the ingest path itself needs.
    # A connection lost under us (PostgreSQL restarted) fails one statement; SQLAlchemy then
    # recycles every pooled connection, and the ingest path retries such a tap on a fresh one.
    kwargs.setdefault("pool_pre_ping", False)
    return create_engine(url, **kwargs)


def _ensure_sqlite_dir(url: str) -> None:
    _, _, rest = url.partition(":///")
    if rest and not rest.startswith(":memory:"):
        Path(rest.split("?", 1)[0]).parent.mkdir(parents=True, exist_ok=True)


def _install_sqlite_pragmas(engine: Engine, busy_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
            # WAL + NORMAL is durable against application crashes; only an OS crash may lose
            # the last transactions. This is SQLite's documented recommendation for WAL.
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()


class _SQLiteWriteLock:
    """One writer at a time: a thread lock inside the process, ``flock`` across processes.

    SQLite allows one writer; a second writer that finds the database locked sleeps in
    SQLite's busy handler (1, 2, 5, 10… ms) and retries, which under concurrent requests costs
    far more than the write itself. Queueing writers on these locks instead wakes the next one
    as soon as the lock is free. ``flock`` on a side file covers several tracker processes
    (``tracker serve --workers N``) and a station writing straight into the same file; the
    busy timeout remains the safety net for writers that do not take the lock.
    """

    def __init__(self, lock_path: Path | None) -> None:
        self._thread_lock = threading.Lock()
        self._lock_path = lock_path
        self._fd: int | None = None

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        if self._lock_path is None:
            return
        try:
            if self._fd is None:
                self._fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise

    def __exit__(self, *_exc: object) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()


_SQLITE_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, _SQLiteWriteLock] = (
    weakref.WeakKeyDictionary()
)
_LOCKS_GUARD = threading.Lock()


def write_lock(session_or_engine: Any) -> contextlib.AbstractContextManager[Any]:
    """Hold around a write transaction: serialises SQLite writers (see _SQLiteWriteLock);
    a no-op on PostgreSQL, where row locks and the compare-and-set do the job."""
    engine = session_or_engine
    if not isinstance(engine, Engine):
        engine = session_or_engine.get_bind()
    if engine.dialect.name != "sqlite":
        return contextlib.nullcontext()
    with _LOCKS_GUARD:
        lock = _SQLITE_WRITE_LOCKS.get(engine)
        if lock is None:
            database = engine.url.database
            path = None
            if database and database != ":memory:" and not database.startswith("file:"):
                path = Path(database).with_name(Path(database).name + ".writelock")
            lock = _SQLITE_WRITE_LOCKS[engine] = _SQLiteWriteLock(path)
    return lock


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded values after commit (routes render after committing)."""
    return sessionmaker(bind=engine, class_=Session, expire_on_commit=False)


def get_session(request: Request) -> Iterator[Session]:
    """FastAPI dependency: one session per request, from ``app.state.sessionmaker``."""
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    with factory() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def check_schema_current(engine: Engine) -> None:
    """Raise :class:`SchemaNotCurrentError` unless the database is at the Alembic head."""
    from tracker.migrations import current_revision, head_revision

    head = head_revision()
    current = current_revision(engine)
    if current != head:
        where = "an empty database" if current is None else f"revision {current}"
        raise SchemaNotCurrentError(
            f"the tracker database is at {where} but this version needs {head}; "
            "run `tracker db upgrade` first"
        )


class AsyncPgPool:
    """A handful of autocommitted psycopg ``AsyncConnection``s for the async ingest path.

    Why not SQLAlchemy's pool: the hot ingest statement is one autocommitted round trip, and
    awaiting it on the event loop saves the worker-thread hop and GIL hand-offs a synchronous
    connection costs per tap (measured in bench/tracker.py). psycopg_pool is not a
    dependency; this needs no more than a queue. Connections open lazily, at most ``size``.

    An asyncio connection belongs to the loop it was opened on, so a pool serves one loop
    (see :func:`async_pg_pool`).
    """

    def __init__(self, conninfo: str, size: int, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._conninfo = conninfo
        self._size = size
        self._opened = 0  # slots handed out; an idle ``None`` is a slot with no connection
        self._idle: asyncio.Queue[Any] = asyncio.Queue()
        self._all: set[Any] = set()

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        """An open autocommit connection; a broken one is closed on return, not reused."""
        import psycopg

        try:
            conn = self._idle.get_nowait()
        except asyncio.QueueEmpty:
            if self._opened < self._size:
                self._opened += 1
                conn = None
            else:
                conn = await self._idle.get()
        try:
            if conn is None or conn.closed:
                conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
                self._all.add(conn)
            yield conn
        finally:
            if conn is not None and not _reusable(conn):
                self.discard(conn)
                conn = None
            self._idle.put_nowait(conn)

    def discard(self, conn: Any) -> None:
        self._all.discard(conn)
        _close_now(conn)

    def close_idle(self) -> None:
        """Close the connections nobody is using (after the server went away: they are dead
        too). Connections in use are left to their users, who find out and return them."""
        slots = 0
        while True:
            try:
                conn = self._idle.get_nowait()
            except asyncio.QueueEmpty:
                break
            if conn is not None:
                self.discard(conn)
            slots += 1
        for _ in range(slots):
            self._idle.put_nowait(None)

    def close(self) -> None:
        """Close every connection, in use or not (app shutdown, when no request is left).
        Safe from any thread or loop: closing does not wait."""
        for conn in list(self._all):
            self.discard(conn)


def _reusable(conn: Any) -> bool:
    """Open, healthy and idle: not broken, and no statement left running (a request cancelled
    while it awaited its answer) that would stand in the next user's way."""
    from psycopg.pq import TransactionStatus

    return (
        not conn.closed
        and not conn.broken
        and conn.info.transaction_status == TransactionStatus.IDLE
    )


def _close_now(conn: Any) -> None:
    # AsyncConnection.close() awaits nothing (it only finishes the libpq connection), so
    # finishing it here is the same and works from outside the connection's own loop.
    if not conn.closed:
        conn.pgconn.finish()


_ASYNC_POOLS: weakref.WeakKeyDictionary[Engine, dict[asyncio.AbstractEventLoop, AsyncPgPool]] = (
    weakref.WeakKeyDictionary()
)
ASYNC_POOL_SIZE = 6


def async_pg_pool(engine: Engine) -> AsyncPgPool:
    """The async connection pool of ``engine`` (PostgreSQL) for the running event loop.

    A server runs one loop for its life; test clients start a loop per client. Pools of
    loops that have closed are closed here, so they do not keep connections open."""
    loop = asyncio.get_running_loop()
    pools = _ASYNC_POOLS.get(engine)
    if pools is None:
        pools = _ASYNC_POOLS[engine] = {}
    pool = pools.get(loop)
    if pool is None:
        for old_loop in [lp for lp in pools if lp.is_closed()]:
            pools.pop(old_loop).close()
        conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        pool = pools[loop] = AsyncPgPool(conninfo, ASYNC_POOL_SIZE, loop)
    return pool


def close_async_pools(engine: Engine | None = None) -> None:
    """Close the async pools of ``engine`` (every engine when None) on the running loop, or
    on every loop when called outside one; app shutdown calls it."""
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    engines = [engine] if engine is not None else list(_ASYNC_POOLS)
    for eng in engines:
        pools = _ASYNC_POOLS.get(eng, {})
        for pool_loop in [lp for lp in pools if loop is None or lp is loop]:
            pools.pop(pool_loop).close()
