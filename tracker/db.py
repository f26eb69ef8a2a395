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
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio.to_thread
import sqlalchemy as sa
from fastapi import Depends, Request
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from tracker.pgpool import AsyncPgPool
from tracker.settings import TrackerSettings, normalise_database_url

T = TypeVar("T")

#: Key of the :class:`Database` in ``Session.info`` (services find the process state there).
DATABASE_KEY = "tracker.database"


class SchemaNotCurrentError(RuntimeError):
    """The database schema is missing or older than this code; the message says what to run."""


class DatabaseBusy(RuntimeError):
    """SQLite's write lock could not be had in time (another process, a backup or a long
    export holds it). Nothing was written; the web app answers 503 with ``Retry-After`` and
    a station retries the record later."""

    retry_after_s = 2

    def __init__(self) -> None:
        super().__init__("the database is busy with another writer; retry in a moment")


def is_busy(exc: BaseException) -> bool:
    """True for SQLite's "database is locked" / "busy", raw or wrapped by SQLAlchemy."""
    if isinstance(exc, DatabaseBusy):
        return True
    orig = getattr(exc, "orig", exc)
    if isinstance(orig, sqlite3.OperationalError):
        text = str(orig).lower()
        return "locked" in text or "busy" in text
    return False


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
    """Create the directory, and a new database file readable by its owner only (0600): it
    holds password hashes, session ids and station token hashes. SQLite gives its -wal and
    -shm files the database file's mode."""
    _, _, rest = url.partition(":///")
    if rest and not rest.startswith(":memory:") and not rest.startswith("file:"):
        path = Path(rest.split("?", 1)[0])
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


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

    def __init__(self, lock_path: Path | None, wait_s: float) -> None:
        self._thread_lock = threading.Lock()
        self._lock_path = lock_path
        self._fd: int | None = None
        self._wait_s = wait_s

    def __enter__(self) -> None:
        """Wait at most ``wait_s`` for both locks, then :class:`DatabaseBusy`: a request
        must not queue behind a writer that holds the lock for long."""
        deadline = time.monotonic() + self._wait_s
        if not self._thread_lock.acquire(timeout=self._wait_s):
            raise DatabaseBusy()
        if self._lock_path is None:
            return
        try:
            if self._fd is None:
                self._fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            # Another process holds the file lock for about a write (a fraction of a
            # millisecond): poll finely. Backing off to tens of milliseconds, as SQLite's own
            # busy handler does, left a second `tracker serve` worker asleep while the lock
            # was free again and again (bench tracker, 2 workers).
            pause = 0.0002
            while True:
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise DatabaseBusy() from None
                    time.sleep(pause)
                    pause = min(pause * 2, 0.002)
        except BaseException:
            self._thread_lock.release()
            raise

    def __exit__(self, *_exc: object) -> None:
        self.release()

    def try_acquire(self) -> bool:
        """Both locks if they are free this instant, without waiting (for a caller on the
        event loop, which must never wait); :meth:`release` them after."""
        if not self._thread_lock.acquire(blocking=False):
            return False
        if self._lock_path is None:
            return True
        try:
            if self._fd is None:
                self._fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            self._thread_lock.release()
            return False
        except BaseException:
            self._thread_lock.release()
            raise

    def release(self) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def __del__(self) -> None:
        if self._fd is not None:
            os.close(self._fd)


def _write_lock_for(engine: Engine, wait_s: float) -> contextlib.AbstractContextManager[Any]:
    if engine.dialect.name != "sqlite":
        return contextlib.nullcontext()
    database = engine.url.database
    path = None
    if database and database != ":memory:" and not database.startswith("file:"):
        path = Path(database).with_name(Path(database).name + ".writelock")
    return _SQLiteWriteLock(path, wait_s)


class Database:
    """This process's handle on one tracker database, built once (``create_app``, the CLI, a
    station writing straight into the database) and passed down.

    It holds what must be shared by every writer of the process and must not be global: the
    SQLite write lock, the async PostgreSQL pools (one per event loop), and the station
    memos (token cache, last-seen throttle, see :mod:`tracker.services.stations`) and the
    in-process event listeners (see :mod:`tracker.events`), which other modules hang on
    :attr:`state`. Sessions from :attr:`sessions` carry it in ``session.info``.
    """

    def __init__(self, engine: Engine, *, write_wait_s: float = 10.0) -> None:
        """``write_wait_s``: how long a SQLite writer waits for the write lock before
        :class:`DatabaseBusy` (the web app passes its busy timeout, 2 s by default)."""
        self.engine = engine
        self.dialect = engine.dialect.name
        self.write_lock = _write_lock_for(engine, write_wait_s)
        self.sessions: sessionmaker[Session] = sessionmaker(
            bind=engine, class_=Session, expire_on_commit=False, info={DATABASE_KEY: self}
        )
        #: Per-database state of other modules, created on first use by its owner.
        self.state: dict[str, Any] = {}
        self._state_guard = threading.Lock()
        self._async_pools: dict[asyncio.AbstractEventLoop, AsyncPgPool] = {}

    def try_write_lock(self) -> bool:
        """SQLite: take the write lock if it is free this instant (never waits; for the event
        loop), then :meth:`release_write_lock`. False when it is held, or not SQLite."""
        lock = self.write_lock
        return isinstance(lock, _SQLiteWriteLock) and lock.try_acquire()

    def release_write_lock(self) -> None:
        lock = self.write_lock
        if isinstance(lock, _SQLiteWriteLock):
            lock.release()

    def shared(self, key: str, factory: Any) -> Any:
        """The object stored under ``key``, created by ``factory()`` on first use."""
        found = self.state.get(key)
        if found is None:
            with self._state_guard:
                found = self.state.setdefault(key, factory())
        return found

    async def call(self, work: Callable[[], T]) -> T:
        """Run blocking database work for a caller on the event loop, in a worker thread:
        PostgreSQL waits on the network, and SQLite may wait for a write lock held by
        another process (a backup, an export), which must never stall the loop."""
        return await anyio.to_thread.run_sync(work)

    def async_pool(self) -> AsyncPgPool:
        """The async connection pool (PostgreSQL) for the running event loop.

        A server runs one loop for its life; test clients start a loop per client. Pools of
        loops that have closed are closed here, so they do not keep connections open."""
        loop = asyncio.get_running_loop()
        pool = self._async_pools.get(loop)
        if pool is None:
            for old_loop in [lp for lp in self._async_pools if lp.is_closed()]:
                self._async_pools.pop(old_loop).close()
            url = self.engine.url.set(drivername="postgresql")
            conninfo = url.render_as_string(hide_password=False)
            pool = self._async_pools[loop] = AsyncPgPool(conninfo, ASYNC_POOL_SIZE, loop)
        return pool

    def close_async_pools(self) -> None:
        """Close the async pools on the running loop, or on every loop when called outside
        one; app shutdown calls it."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        for pool_loop in [lp for lp in self._async_pools if loop is None or lp is loop]:
            self._async_pools.pop(pool_loop).close()


ASYNC_POOL_SIZE = 6


def database_of(session: Session) -> Database:
    """The :class:`Database` a session came from (a bare ``Session(engine)`` gets a new one,
    which shares nothing: use :attr:`Database.sessions`)."""
    found = session.info.get(DATABASE_KEY)
    if found is None:
        found = session.info[DATABASE_KEY] = Database(session.get_bind())  # type: ignore[arg-type]
    return found  # type: ignore[no-any-return]


def write_lock(session: Session) -> contextlib.AbstractContextManager[Any]:
    """Hold around a write transaction: serialises SQLite writers (see _SQLiteWriteLock);
    a no-op on PostgreSQL, where row locks and the compare-and-set do the job."""
    return database_of(session).write_lock


#: The PostgreSQL advisory lock of the transactions that create or move payouts.
PAYOUT_WRITES_LOCK = 0x5041594F  # "PAYO"


@contextlib.contextmanager
def payout_write_lock(session: Session) -> Iterator[None]:
    """Hold around a transaction that creates or moves payouts. The payout rollup triggers
    (migration 0011) lock one rollup row for a payout's old state and one for its new state,
    so two transactions moving several payouts of one day could take those rows in opposite
    orders and deadlock on PostgreSQL. Such transactions queue on one transaction-scoped
    advisory lock there (released at commit or rollback), as every writer already queues on
    the write lock on SQLite."""
    with write_lock(session):
        if session.get_bind().dialect.name == "postgresql":
            session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                            {"key": PAYOUT_WRITES_LOCK})
        yield


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded values after commit (routes render after committing), on a
    new :class:`Database` for ``engine`` (a process should build one and reuse it)."""
    return Database(engine).sessions


def get_session(request: Request) -> Iterator[Session]:
    """FastAPI dependency: one session per request, from ``app.state.sessionmaker``."""
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    with factory() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def describe_database(url: str | sa.URL) -> str:
    """The database as an operator names it: a SQLite file's path, or a PostgreSQL URL
    without its password (safe to print)."""
    parsed = sa.make_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() == "sqlite":
        return parsed.database or ":memory:"
    # URL.set() ignores None: build the URL again without the password.
    return parsed._replace(password=None).render_as_string(hide_password=False)


def check_schema_current(engine: Engine) -> None:
    """Raise :class:`SchemaNotCurrentError` unless the database is at the Alembic head; the
    message names the database and the command to run."""
    from tracker.migrations import current_revision, head_revision

    head = head_revision()
    current = current_revision(engine)
    if current != head:
        name = describe_database(engine.url)
        state = "is empty (no tables yet)" if current is None else f"is at revision {current}"
        raise SchemaNotCurrentError(
            f"the tracker database {name} {state} but this version needs {head}; "
            "run `tracker db upgrade` first"
        )


def check_database_exists(settings: TrackerSettings) -> None:
    """Refuse a SQLite file that does not exist yet, instead of creating an empty one: only
    ``tracker db upgrade`` creates the database (with its tables)."""
    path = settings.sqlite_path()
    if path is not None and not path.exists():
        raise SchemaNotCurrentError(
            f"there is no tracker database at {path}; run `tracker db upgrade` to create it "
            "(or point TRACKER_DATABASE_URL at the existing one)"
        )
