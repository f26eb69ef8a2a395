"""The common case of a tap report, in fewer steps per database (used by ``TapRecorder``).

Most reports are an accepted tap whose counter moves up on an unblocked card, known or seen
for the first time. These paths store exactly that case and answer None for anything else
(blocked card, replay, retry, a key already used): nothing was stored then, and
:func:`~tracker.services.taps.record.record_tap` finds out why. Both keep its guarantees: the
compare-and-set on ``card.last_counter`` decides races, everything a request writes commits
together, and a refused request stores nothing.

A card seen for the first time is created by these paths too (the first tap of every new
card would otherwise take the general path, a worker thread and the ORM: a tenth of the taps
in the ingest benchmark), with the tap's counter, as ``record_tap``'s create and
compare-and-set leave it.

* PostgreSQL: compare-and-set (or card creation), tap insert and ``pg_notify`` are one
  autocommitted statement,
  one network round trip instead of BEGIN + UPDATE + INSERT + NOTIFY + COMMIT; awaited on an
  ``AsyncConnection`` of :meth:`tracker.db.Database.async_pool` (prepared on each connection)
  or run on a pooled synchronous connection.
* SQLite: the same statements as ``record_tap`` on the raw ``sqlite3`` connection, under
  the same write lock, without the ORM session and statement compilation around them (they
  cost more than the SQL; measured in bench/tracker.py), and the taps that arrive together
  share a transaction (group commit, see :class:`SqliteFastPath`).
"""

from __future__ import annotations

import asyncio
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
# A card seen for the first time is created here with the tap's counter (as record_tap's
# create and compare-and-set would leave it); when the card exists but refused the
# compare-and-set (blocked, a replay) the insert conflicts and nothing is stored.
_ONE_STATEMENT_PG = """
    WITH cas AS (
        UPDATE card
           SET last_counter = %(counter)s, last_seen = %(now)s,
               card_id = coalesce(card.card_id, %(card_id)s)
         WHERE uid = %(uid)s AND status <> 'blocked'
           AND (last_counter IS NULL OR last_counter < %(counter)s)
        RETURNING id, card_id, alias
    ), created AS (
        INSERT INTO card (uid, card_id, status, first_seen, last_seen, last_counter)
        SELECT %(uid)s, %(card_id)s, 'active', %(now)s, %(now)s, %(counter)s
         WHERE NOT EXISTS (SELECT 1 FROM cas)
        ON CONFLICT DO NOTHING
        RETURNING id, card_id, alias
    ), chosen AS (
        SELECT id, card_id, alias FROM cas UNION ALL SELECT id, card_id, alias FROM created
    ), ins AS (
        INSERT INTO tap (card_pk, station_pk, counter, station_time, received_at, outcome,
                         reason, issuer_host, idempotency_key)
        SELECT chosen.id, %(station_pk)s, %(counter)s, %(station_time)s, %(now)s, 'accepted',
               %(reason)s, %(issuer_host)s, %(key)s
          FROM chosen
        RETURNING id
    )
    SELECT ins.id, chosen.card_id, chosen.alias,
           pg_notify(%(channel)s, json_build_object(
               'topic', 'tap',
               'data', json_build_object(
                   'id', ins.id, 'uid', CAST(%(uid)s AS text),
                   'station', CAST(%(station)s AS text),
                   'counter', CAST(%(counter)s AS bigint), 'outcome', 'accepted'))::text)
      FROM ins CROSS JOIN chosen
"""

_CAS_SQLITE = (
    "UPDATE card SET last_counter = ?, last_seen = ?, card_id = coalesce(card_id, ?)"
    " WHERE uid = ? AND status <> 'blocked' AND (last_counter IS NULL OR last_counter < ?)"
    " RETURNING id, card_id, alias"
)
# A card seen for the first time: created with this tap's counter, as record_tap's create
# followed by its compare-and-set would leave it. No row back: the card exists after all
# (blocked, or a replay), and record_tap finds out which.
_NEW_CARD_SQLITE = (
    "INSERT INTO card (uid, card_id, status, first_seen, last_seen, last_counter)"
    " VALUES (?, ?, 'active', ?, ?, ?) ON CONFLICT DO NOTHING"
    " RETURNING id, card_id, alias"
)
INSERT_TAP_SQLITE = (
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


#: How long a group waits on the loop for the write lock before the threads wait for it, and
#: how often it looks (a commit holds the lock for a fraction of a millisecond).
GROUP_WAIT_S = 0.02
GROUP_RETRY_S = 0.0005
#: The most taps one group commit takes (about 10 ms of the loop's time at most).
MAX_GROUP = 200


class SqliteFastPath:
    """The compare-and-set and the insert on a raw ``sqlite3`` connection.

    :meth:`store` runs in a worker thread under the write lock (it may wait for it).
    :meth:`store_soon` is for the event loop, which it never blocks: it takes the write lock
    only when it is free at that instant (looking again every :data:`GROUP_RETRY_S` for at
    most :data:`GROUP_WAIT_S`) and runs on a connection of its own whose busy timeout is 0, so
    a lock held elsewhere for longer (another process, a backup) sends the caller to the
    thread. That saves the thread hop and its GIL hand-offs for nearly every tap.

    Group commit: the taps that reach :meth:`store_soon` in the same turn of the event loop
    (the requests that arrived together) are stored in one transaction, in arrival order,
    when the loop comes round. A commit writes every page the transaction touched to the WAL
    (the tap row, six tap indexes, the card row, the day's count), and most of those pages
    are the same for taps stored together, so commits are what concurrent stations share
    (``bench/`` measured about 140 us per commit on this machine kind against 50 us for the
    two statements). Each tap keeps its own answer: a tap that is not the common case leaves
    no trace in the transaction (its statements change no row), and should one step fail
    in a way the statements do not foresee (a key taken after all), the transaction is rolled
    back and its taps are stored one transaction each, exactly as without grouping."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._stamp = utc_stamp(database)
        self._own: Any = None  # the event loop's own connection, opened on first use
        self._waiting: list[_Waiting] = []  # taps for the next group commit, in order
        self._scheduled = False  # a _commit_group is due on the loop
        self._busy_since: float | None = None  # loop time the lock was first found busy

    def store(self, *, station_id: int, tap: TapCreate, now: datetime) -> Stored | None:
        """In the calling thread; the caller holds the write lock."""
        raw = self.database.engine.raw_connection()
        try:
            return self._store_on(raw, station_id=station_id, tap=tap, now=now)
        finally:
            raw.close()  # back to the pool

    async def store_soon(
        self, *, station_id: int, tap: TapCreate, now: datetime
    ) -> Stored | Literal[False] | None:
        """Like :meth:`store`, on the event loop, in the group commit of this turn of the loop.
        False: the write lock stayed busy (nothing was stored), do it in a thread with
        :meth:`store`."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Stored | Literal[False] | None] = loop.create_future()
        self._waiting.append(_Waiting(station_id, tap, now, answer))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._commit_group)
        return await answer

    def _commit_group(self) -> None:
        """Store what is waiting if the write lock is free; else look again shortly (another
        process or thread commits in well under a millisecond, and taps arriving meanwhile
        join the group), and after :data:`GROUP_WAIT_S` let the threads wait for it."""
        loop = asyncio.get_running_loop()
        if not self.database.try_write_lock():
            if self._busy_since is None:
                self._busy_since = loop.time()
            if loop.time() - self._busy_since < GROUP_WAIT_S:
                loop.call_later(GROUP_RETRY_S, self._commit_group)
                return
            group = self._take_group()
            for waiting in group:
                _answer(waiting, False)
            return
        group = self._take_group()
        try:
            answers = self._store_group(group)
        except BaseException as exc:  # every tap of the group gets the error (a 500 each)
            for waiting in group:
                if not waiting.answer.done():
                    waiting.answer.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        finally:
            self.database.release_write_lock()
        for waiting, stored in zip(group, answers, strict=True):
            _answer(waiting, stored)

    def _take_group(self) -> list[_Waiting]:
        """The oldest :data:`MAX_GROUP` waiting taps; the rest go in the next turn of the loop,
        so one large burst does not hold the loop (and every other route) for long."""
        group, self._waiting = self._waiting[:MAX_GROUP], self._waiting[MAX_GROUP:]
        self._busy_since = None
        if self._waiting:
            asyncio.get_running_loop().call_soon(self._commit_group)
        else:
            self._scheduled = False
        return group

    def _store_group(self, group: list[_Waiting]) -> list[Stored | Literal[False] | None]:
        """The group in one transaction; the caller holds the write lock."""
        raw = self._own_connection()
        try:
            if len(group) == 1:
                one = group[0]
                return [self._store_on(raw, station_id=one.station_id, tap=one.tap, now=one.now)]
            cursor: Any = raw.cursor()
            try:
                answers: list[Stored | Literal[False] | None] = [
                    self._one(cursor, station_id=w.station_id, tap=w.tap, now=w.now)
                    for w in group
                ]
                raw.commit()
                return answers
            except sqlite3.IntegrityError:
                raw.rollback()  # then one transaction per tap, below
            except BaseException:
                raw.rollback()
                raise
            finally:
                cursor.close()
            return [
                self._store_on(raw, station_id=w.station_id, tap=w.tap, now=w.now)
                for w in group
            ]
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            return [False] * len(group)  # written elsewhere, outside our lock; rolled back

    def _own_connection(self) -> Any:
        if self._own is None:
            # Out of the pool for good: the pool could make the loop wait for a connection.
            raw = self.database.engine.raw_connection()
            raw.detach()  # closed by close() (the app's shutdown)
            driver: Any = raw.dbapi_connection
            driver.execute("PRAGMA busy_timeout=0")
            self._own = raw
        return self._own

    def close(self) -> None:
        if self._own is not None:
            self._own.close()
            self._own = None

    def _store_on(
        self, raw: Any, *, station_id: int, tap: TapCreate, now: datetime
    ) -> Stored | None:
        """One tap in a transaction of its own."""
        cursor: Any = raw.cursor()
        try:
            stored = self._one(cursor, station_id=station_id, tap=tap, now=now)
            if stored is None:
                raw.rollback()
            else:
                raw.commit()
            return stored
        except sqlite3.IntegrityError:
            raw.rollback()
            return None  # the key is taken: nothing stored; record_tap sorts it out
        except BaseException:
            raw.rollback()
            raise
        finally:
            cursor.close()

    def _one(self, cursor: Any, *, station_id: int, tap: TapCreate, now: datetime) -> Stored | None:
        """The statements of one tap in the open transaction; None (and no row changed): not
        the common case. Raises ``IntegrityError`` when the key is taken (the compare-and-set
        has run then: roll back)."""
        stamp = self._stamp
        moment = stamp(now)
        card = cursor.execute(
            _CAS_SQLITE, (tap.counter, moment, tap.card_id, tap.card_uid, tap.counter)
        ).fetchone()
        if card is None:
            card = cursor.execute(
                _NEW_CARD_SQLITE, (tap.card_uid, tap.card_id, moment, moment, tap.counter)
            ).fetchone()
            if card is None:
                return None
        cursor.execute(
            INSERT_TAP_SQLITE,
            (
                card[0],
                station_id,
                tap.counter,
                stamp(tap.station_time),
                moment,
                tap.reason,
                tap.issuer_host,
                tap.idempotency_key,
            ),
        )
        return Stored(int(cursor.lastrowid), card[1], card[2])


def _answer(waiting: _Waiting, stored: Stored | Literal[False] | None) -> None:
    if not waiting.answer.done():  # done: the request was cancelled (its tap stays stored)
        waiting.answer.set_result(stored)


class _Waiting(NamedTuple):
    """A tap waiting for the next group commit, and where its answer goes."""

    station_id: int
    tap: TapCreate
    now: datetime
    answer: asyncio.Future[Stored | Literal[False] | None]


def utc_stamp(database: Database) -> Callable[[Any], Any]:
    """The exact bind conversion the ORM applies to a ``UTCDateTime`` on this dialect, so
    rows written with raw SQL read back (and sort) like rows written through the ORM."""
    processor = UTCDateTime().bind_processor(database.engine.dialect)
    return processor if processor is not None else _same


def _same(value: Any) -> Any:
    return value
