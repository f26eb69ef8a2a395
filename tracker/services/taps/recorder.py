"""The one entry point that records a tap: :class:`TapRecorder`.

Built once per process on a :class:`~tracker.db.Database` (``create_app`` puts one on
``app.state``; a station writing straight into the database builds its own). It picks the
database's short path for the common case (``fast.py``) when it is built, and hands every
other case to :func:`~tracker.services.taps.record.record_tap`, which finds out why and
answers exactly as before. Callers never look at the dialect.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy.exc import OperationalError

from tracker.db import Database, DatabaseBusy, is_busy
from tracker.models import TapCreate, TapOutcome, TapPublic, utcnow
from tracker.services import stations as station_service
from tracker.services.taps.bulk import BulkPath, PgBulkPath, SqliteBulkPath
from tracker.services.taps.fast import PgFastPath, SqliteFastPath, Stored
from tracker.services.taps.record import TapRefused, record_tap
from tracker.services.taps.rows import stored_public

T = TypeVar("T")


class TapRecorder:
    """Stores taps; ``record`` / ``record_async`` answer ``(tap, created)`` or raise
    :class:`~tracker.services.taps.CounterConflict` / :class:`~tracker.services.taps.CardBlocked`
    (nothing stored)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._pg = PgFastPath(database) if database.dialect == "postgresql" else None
        self._sqlite = SqliteFastPath(database) if database.dialect == "sqlite" else None
        self._bulk: BulkPath | None = (
            PgBulkPath(database) if self._pg is not None
            else SqliteBulkPath(database) if self._sqlite is not None
            else None
        )

    def close(self) -> None:
        """Close what the recorder holds of its own (SQLite: the event loop's connection)."""
        if self._sqlite is not None:
            self._sqlite.close()

    def record(
        self, tap: TapCreate, *, station_name: str, station_id: int | None = None
    ) -> tuple[TapPublic, bool]:
        """Store a tap in the calling thread. ``station_id`` names an authenticated station;
        without it the station called ``station_name`` is used (created if missing).
        Raises :class:`~tracker.db.DatabaseBusy` when SQLite's write lock is held elsewhere
        past the busy timeout (nothing stored)."""
        return self._busy_is_busy(
            self._record, tap, station_name=station_name, station_id=station_id
        )

    @staticmethod
    def _busy_is_busy(work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``work(...)``, with SQLite's "database is locked" raised as
        :class:`~tracker.db.DatabaseBusy` (the routes answer 503 + Retry-After)."""
        try:
            return work(*args, **kwargs)
        except (sqlite3.OperationalError, OperationalError) as exc:
            if is_busy(exc):
                raise DatabaseBusy() from exc
            raise

    def _record(
        self, tap: TapCreate, *, station_name: str, station_id: int | None
    ) -> tuple[TapPublic, bool]:
        if station_id is not None and _common_case(tap):
            now = utcnow()
            stored = self._store_fast(
                station_id=station_id, station_name=station_name, tap=tap, now=now
            )
            if stored is not None:
                return self._answer(tap, stored, station_name=station_name, now=now), True
        return self._record_general(tap, station_name=station_name, station_id=station_id)

    def record_many(
        self, taps: Sequence[TapCreate], *, station_name: str, station_id: int
    ) -> Iterator[tuple[int, bool] | TapRefused]:
        """Store ``taps`` in order, answering for each ``(tap_id, created)`` or the refusal
        :meth:`record` would raise, exactly as recording them one by one would (a batch).

        Runs of the common case go set-based in one transaction each (``bulk.py``); a tap the
        run cannot answer (a replay, a blocked card, a key of another station, a refused or
        unverified tap) is recorded alone, and the next run starts after it. Answers come as
        each run commits; a database error stops the iteration there (what was answered is
        stored, nothing after it)."""
        position = 0
        while position < len(taps):
            end = position
            while end < len(taps) and _common_case(taps[end]):
                end += 1
            if end > position and self._bulk is not None:
                done = self._bulk_run(taps[position:end], station_name=station_name,
                                      station_id=station_id)
                yield from done
                position += len(done)
                if position == end:
                    continue
            try:
                public, created = self._busy_is_busy(
                    self._record_general, taps[position], station_name=station_name,
                    station_id=station_id,
                )
            except TapRefused as refusal:
                yield refusal
            else:
                yield public.id, created
            position += 1

    def _bulk_run(
        self, taps: Sequence[TapCreate], *, station_name: str, station_id: int
    ) -> list[tuple[int, bool]]:
        bulk = self._bulk
        assert bulk is not None
        now = utcnow()

        def store() -> list[tuple[int, bool]]:
            with self.database.write_lock:
                done = bulk.store(taps, station_id=station_id, station_name=station_name,
                                  now=now)
                if done:
                    self._touch(station_id, now)
            return done

        return self._busy_is_busy(store)

    async def record_async(
        self, tap: TapCreate, *, station_name: str, station_id: int
    ) -> tuple[TapPublic, bool]:
        """:meth:`record` for a caller on the event loop, same answers and errors.

        PostgreSQL waits on the network: the common case is awaited on an async connection
        (no thread hop). SQLite writes are serialised anyway and take well under a
        millisecond: the common case runs on the loop when it need not wait for anything,
        with the other taps of the same turn of the loop in one transaction
        (``SqliteFastPath.store_soon``), which saves a thread hop and its GIL hand-offs per
        tap, and most of a commit. Anything else runs in a worker thread."""
        if self._sqlite is not None:
            # SQLite: on the loop in a group commit while the write lock can be had within a
            # few milliseconds (no thread hop: the write takes well under a millisecond); else
            # in a worker thread, as the lock may be held elsewhere for a while (DatabaseBusy
            # after the busy timeout) and the loop must keep serving. Touching the station,
            # when due, goes to the thread too.
            if _common_case(tap) and not station_service.touch_due(
                self.database, station_id=station_id
            ):
                now = utcnow()
                stored = await self._sqlite.store_soon(station_id=station_id, tap=tap, now=now)
                if stored:
                    return self._answer(tap, stored, station_name=station_name, now=now), True

            def on_sqlite() -> tuple[TapPublic, bool]:
                return self.record(tap, station_name=station_name, station_id=station_id)

            return await anyio.to_thread.run_sync(on_sqlite)
        assert self._pg is not None
        if _common_case(tap):
            now = utcnow()
            stored = await self._pg.store_async(
                station_id=station_id, station_name=station_name, tap=tap, now=now
            )
            if stored is not None:
                if station_service.touch_due(self.database, station_id=station_id):
                    await anyio.to_thread.run_sync(self._touch, station_id, now)
                return self._answer(tap, stored, station_name=station_name, now=now), True

        def general() -> tuple[TapPublic, bool]:
            return self._record_general(tap, station_name=station_name, station_id=station_id)

        return await anyio.to_thread.run_sync(general)

    def _store_fast(
        self, *, station_id: int, station_name: str, tap: TapCreate, now: datetime
    ) -> Stored | None:
        if self._pg is not None:
            stored = self._pg.store(
                station_id=station_id, station_name=station_name, tap=tap, now=now
            )
            if stored is not None:
                self._touch(station_id, now)
            return stored
        if self._sqlite is not None:
            with self.database.write_lock:
                stored = self._sqlite.store(station_id=station_id, tap=tap, now=now)
                if stored is not None:
                    self._touch(station_id, now)
            return stored
        return None

    def _touch(self, station_id: int, now: datetime) -> None:
        if station_service.touch_due(self.database, station_id=station_id):
            with self.database.engine.begin() as conn:
                station_service.touch(self.database, conn, station_id=station_id, now=now)

    def _record_general(
        self, tap: TapCreate, *, station_name: str, station_id: int | None
    ) -> tuple[TapPublic, bool]:
        with self.database.sessions() as session:
            return record_tap(session, station_id=station_id, station_name=station_name, tap=tap)

    @staticmethod
    def _answer(tap: TapCreate, stored: Stored, *, station_name: str, now: datetime) -> TapPublic:
        return stored_public(
            tap,
            tap_id=stored.tap_id,
            card_id=stored.card_id,
            card_alias=stored.card_alias,
            station_name=station_name,
            received_at=now,
        )


def _common_case(tap: TapCreate) -> bool:
    """What the fast paths store: an accepted, verified tap (it moves the card's counter)."""
    return tap.outcome == TapOutcome.accepted and tap.verified
