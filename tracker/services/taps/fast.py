"""The common case of a tap report, in fewer steps per database (used by ``TapRecorder``).

Most reports are an accepted tap on a known, unblocked card whose counter moves up. These
paths store exactly that case and answer None for anything else (unknown card, blocked card,
replay, retry, a key already used): nothing was stored then, and
:func:`~tracker.services.taps.record.record_tap` finds out why. Both keep its guarantees: the
compare-and-set on ``card.last_counter`` decides races, everything a request writes commits
together, and a refused request stores nothing.

* PostgreSQL: compare-and-set, tap insert and ``pg_notify`` are one autocommitted statement,
  one network round trip instead of BEGIN + UPDATE + INSERT + NOTIFY + COMMIT; awaited on an
  ``AsyncConnection`` of :meth:`tracker.db.Database.async_pool` (prepared on each connection)
  or run on a pooled synchronous connection.
* SQLite: the same two statements as ``record_tap`` on the raw ``sqlite3`` connection, under
  the same write lock, without the ORM session and statement compilation around them (they
  cost more than the SQL; measured in bench/tracker.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal, NamedTuple

import psycopg

from tracker.db import Database, is_busy
from tracker.events.notify import CHANNEL
from tracker.models import TapCreate, UTCDateTime
from tracker.services.filters import as_utc


class Stored(NamedTuple):
    """What the fast path learnt: the new tap's id and the card row's id and alias."""

    tap_id: int
    card_id: str | None
    card_alias: str | None


# Nothing half-done survives a failure: a unique violation on the idempotency key aborts the
# whole statement (compare-and-set included). The notification goes out on commit.
_ONE_STATEMENT_PG = """
    WITH cas AS (
        UPDATE card
           SET last_counter = %(counter)s, last_seen = %(now)s,
               card_id = coalesce(card.card_id, %(card_id)s)
         WHERE uid = %(uid)s AND status <> 'blocked'
           AND (last_counter IS NULL OR last_counter < %(counter)s)
        RETURNING id, card_id, alias
    ), ins AS (
        INSERT INTO tap (card_pk, station_pk, counter, station_time, received_at, outcome,
                         reason, issuer_host, idempotency_key)
        SELECT cas.id, %(station_pk)s, %(counter)s, %(station_time)s, %(now)s, 'accepted',
               %(reason)s, %(issuer_host)s, %(key)s
          FROM cas
        RETURNING id
    )
    SELECT ins.id, cas.card_id, cas.alias,
           pg_notify(%(channel)s, json_build_object(
               'topic', 'tap',
               'data', json_build_object(
                   'id', ins.id, 'uid', CAST(%(uid)s AS text),
                   'station', CAST(%(station)s AS text),
                   'counter', CAST(%(counter)s AS bigint), 'outcome', 'accepted'))::text)
      FROM ins CROSS JOIN cas
"""

_CAS_SQLITE = (
    "UPDATE card SET last_counter = ?, last_seen = ?, card_id = coalesce(card_id, ?)"
    " WHERE uid = ? AND status <> 'blocked' AND (last_counter IS NULL OR last_counter < ?)"
    " RETURNING id, card_id, alias"
)
_INSERT_SQLITE = (
    "INSERT INTO tap (card_pk, station_pk, counter, station_time, received_at, outcome,"
    " reason, issuer_host, idempotency_key) VALUES (?, ?, ?, ?, ?, 'accepted', ?, ?, ?)"
)


class PgFastPath:
    """``_ONE_STATEMENT_PG`` on PostgreSQL, awaited or in the calling thread."""

    def __init__(self, database: Database) -> None:
        self.database = database

    @staticmethod
    def _params(*, station_id: int, station_name: str, tap: TapCreate, now: datetime) -> Any:
        return {
            "uid": tap.card_uid,
            "card_id": tap.card_id,
            "counter": tap.counter,
            "now": now,
            "station_pk": station_id,
            "station_time": as_utc(tap.station_time),
            "reason": tap.reason,
            "issuer_host": tap.issuer_host,
            "key": tap.idempotency_key,
            "channel": CHANNEL,
            "station": station_name,
        }

    async def store_async(
        self, *, station_id: int, station_name: str, tap: TapCreate, now: datetime
    ) -> Stored | None:
        """On a pooled autocommit ``AsyncConnection``, prepared at once (``prepare=True``) on
        each connection. None: not the common case, or the server went away; either way
        nothing was stored and ``record_tap`` settles it."""
        params = self._params(station_id=station_id, station_name=station_name, tap=tap, now=now)
        pool = self.database.async_pool()
        lost = False
        try:
            async with pool.connection() as conn:
                try:
                    cursor = await conn.execute(_ONE_STATEMENT_PG, params, prepare=True)
                    row = await cursor.fetchone()
                except psycopg.OperationalError:
                    if not conn.broken:
                        raise
                    lost = True
        except psycopg.errors.UniqueViolation:
            return None  # the key is taken; nothing was stored; record_tap explains the refusal
        if lost:
            # The server went away (restart): every pooled connection, async or not, is dead.
            # The statement committed entirely or not at all; record_tap runs on a fresh
            # connection and finds a stored tap by its key.
            pool.close_idle()
            self.database.engine.dispose()
            return None
        return None if row is None else Stored(int(row[0]), row[1], row[2])

    def store(
        self, *, station_id: int, station_name: str, tap: TapCreate, now: datetime
    ) -> Stored | None:
        """On a pooled psycopg connection in autocommit (no BEGIN or COMMIT round trips);
        psycopg prepares it after a few runs on each connection."""
        params = self._params(station_id=station_id, station_name=station_name, tap=tap, now=now)
        engine = self.database.engine
        raw = engine.raw_connection()
        try:
            driver: Any = raw.driver_connection
            driver.autocommit = True
            try:
                with driver.cursor() as cursor:
                    row = cursor.execute(_ONE_STATEMENT_PG, params).fetchone()
            finally:
                if not driver.broken:
                    driver.autocommit = False  # the pool hands it to transactional code next
        except psycopg.errors.UniqueViolation:
            return None  # the key is taken; nothing was stored; record_tap explains the refusal
        except psycopg.OperationalError:
            if not driver.broken:
                raise
            # The server went away (restart): every pooled connection is dead, so start a new
            # pool (there is no pre-ping, see tracker.db); record_tap runs on a fresh
            # connection. The statement committed entirely or not at all.
            raw.invalidate()
            engine.dispose()
            return None
        finally:
            raw.close()  # back to the pool (a no-op once invalidated)
        return None if row is None else Stored(int(row[0]), row[1], row[2])


class SqliteFastPath:
    """The compare-and-set and the insert on a raw ``sqlite3`` connection.

    :meth:`store` runs in a worker thread under the write lock (it may wait for it).
    :meth:`store_now` is for the event loop: it never waits - it takes the write lock only if
    it is free this instant and runs on a connection of its own whose busy timeout is 0, so a
    lock held elsewhere (another process, a backup) answers at once and the caller goes to the
    thread. That saves the thread hop and its GIL hand-offs for nearly every tap."""

    def __init__(self, database: Database) -> None:
        self.database = database
        # The exact bind conversion the ORM applies to a ``UTCDateTime`` on this dialect, so
        # rows written here read back (and sort) like rows written by ``record_tap``.
        processor = UTCDateTime().bind_processor(database.engine.dialect)
        self._stamp: Callable[[Any], Any] = processor if processor is not None else _same
        self._now: Any = None  # store_now's own connection, opened on first use

    def store(self, *, station_id: int, tap: TapCreate, now: datetime) -> Stored | None:
        """In the calling thread; the caller holds the write lock."""
        raw = self.database.engine.raw_connection()
        try:
            return self._store_on(raw, station_id=station_id, tap=tap, now=now)
        finally:
            raw.close()  # back to the pool

    def store_now(
        self, *, station_id: int, tap: TapCreate, now: datetime
    ) -> Stored | Literal[False] | None:
        """Like :meth:`store` without ever waiting; False: the database is busy (nothing was
        stored), do it in a thread with :meth:`store`."""
        if not self.database.try_write_lock():
            return False
        try:
            if self._now is None:
                # Out of the pool for good: the pool could make the loop wait for a connection.
                raw = self.database.engine.raw_connection()
                raw.detach()  # closed by close() (the app's shutdown)
                driver: Any = raw.dbapi_connection
                driver.execute("PRAGMA busy_timeout=0")
                self._now = raw
            return self._store_on(self._now, station_id=station_id, tap=tap, now=now)
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            return False  # written elsewhere, outside our lock; rolled back
        finally:
            self.database.release_write_lock()

    def close(self) -> None:
        if self._now is not None:
            self._now.close()
            self._now = None

    def _store_on(
        self, raw: Any, *, station_id: int, tap: TapCreate, now: datetime
    ) -> Stored | None:
        stamp = self._stamp
        cursor: Any = raw.cursor()
        try:
            card = cursor.execute(
                _CAS_SQLITE,
                (tap.counter, stamp(now), tap.card_id, tap.card_uid, tap.counter),
            ).fetchone()
            if card is None:
                raw.rollback()
                return None
            cursor.execute(
                _INSERT_SQLITE,
                (
                    card[0],
                    station_id,
                    tap.counter,
                    stamp(tap.station_time),
                    stamp(now),
                    tap.reason,
                    tap.issuer_host,
                    tap.idempotency_key,
                ),
            )
            tap_id = int(cursor.lastrowid)
            raw.commit()
        except sqlite3.IntegrityError:
            raw.rollback()
            return None  # the key is taken: nothing stored; record_tap sorts it out
        except BaseException:
            raw.rollback()
            raise
        finally:
            cursor.close()
        return Stored(tap_id, card[1], card[2])


def _same(value: Any) -> Any:
    return value
