"""The station ingest entry point: :func:`tracker.services.taps.record_tap`, made cheap.

Most reports are the common case: an accepted tap on a known, unblocked card whose counter
moves up. That case gets a short path per database; anything it does not settle (unknown card,
blocked card, replay, retry, a key already used) falls through to ``record_tap``, which finds
out why and answers exactly as before. Both paths keep the guarantees of ``record_tap``: the
compare-and-set on ``card.last_counter`` decides races, everything a request writes commits
together, and a refused request stores nothing.

* PostgreSQL: compare-and-set, tap insert and ``pg_notify`` are one autocommitted statement,
  one network round trip instead of BEGIN + UPDATE + INSERT + NOTIFY + COMMIT.
  :func:`ingest_tap_async` runs that statement on an ``AsyncConnection`` from
  :func:`tracker.db.async_pg_pool`, awaited on the event loop, prepared on each connection;
  only the fallback and the throttled ``last_seen`` touch go to a worker thread.
* SQLite: the same two statements as ``record_tap`` on the raw ``sqlite3`` connection, under
  the same write lock, without the ORM session and statement compilation around them (they
  cost more than the SQL; measured in bench/tracker.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Any

import anyio.to_thread
import sqlalchemy as sa
from sqlmodel import Session

from tracker import events
from tracker.db import async_pg_pool, write_lock
from tracker.models import TapCreate, TapOutcome, TapPublic, UTCDateTime, utcnow
from tracker.services import stations as station_service
from tracker.services.filters import as_utc
from tracker.services.taps import record_tap, stored_public

# Nothing half-done survives a failure: a unique violation on the idempotency key aborts the
# whole statement (compare-and-set included). The notification goes out on commit.
_ONE_STATEMENT_PG = """
    WITH cas AS (
        UPDATE card
           SET last_counter = %(counter)s, last_seen = %(now)s,
               card_id = coalesce(card.card_id, %(card_id)s)
         WHERE uid = %(uid)s AND status <> 'blocked'
           AND (last_counter IS NULL OR last_counter < %(counter)s)
        RETURNING id, card_id
    ), ins AS (
        INSERT INTO tap (card_pk, station_pk, counter, station_time, received_at, outcome,
                         reason, issuer_host, idempotency_key)
        SELECT cas.id, %(station_pk)s, %(counter)s, %(station_time)s, %(now)s, 'accepted',
               %(reason)s, %(issuer_host)s, %(key)s
          FROM cas
        RETURNING id
    )
    SELECT ins.id, cas.card_id,
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
    " RETURNING id, card_id"
)
_INSERT_SQLITE = (
    "INSERT INTO tap (card_pk, station_pk, counter, station_time, received_at, outcome,"
    " reason, issuer_host, idempotency_key) VALUES (?, ?, ?, ?, ?, 'accepted', ?, ?, ?)"
)


def ingest_tap(
    engine: sa.Engine,
    sessions: Callable[[], Session],
    *,
    station_id: int,
    station_name: str,
    tap: TapCreate,
) -> tuple[TapPublic, bool]:
    """Store a tap from an authenticated station: ``record_tap`` semantics and errors
    (``(tap, created)``, :class:`~tracker.services.taps.CounterConflict`,
    :class:`~tracker.services.taps.CardBlocked`)."""
    if tap.outcome == TapOutcome.accepted:
        now = utcnow()
        if engine.dialect.name == "postgresql":
            found = _one_statement_pg(
                engine, station_id=station_id, station_name=station_name, tap=tap, now=now
            )
        elif engine.dialect.name == "sqlite":
            found = _raw_sqlite(engine, station_id=station_id, tap=tap, now=now)
        else:
            found = None
        if found is not None:
            tap_id, card_id = found
            public = stored_public(
                tap, tap_id=tap_id, card_id=card_id, station_name=station_name, received_at=now
            )
            return public, True
    with sessions() as session:
        return record_tap(session, station_id=station_id, station_name=station_name, tap=tap)


async def ingest_tap_async(
    engine: sa.Engine,
    sessions: Callable[[], Session],
    *,
    station_id: int,
    station_name: str,
    tap: TapCreate,
) -> tuple[TapPublic, bool]:
    """:func:`ingest_tap` for a caller on the event loop, same answers and errors.

    On PostgreSQL the common case is awaited on an async connection (no thread hop); every
    other case, and every other database, runs :func:`ingest_tap` in a worker thread."""
    if tap.outcome == TapOutcome.accepted and engine.dialect.name == "postgresql":
        now = utcnow()
        found = await _one_statement_pg_async(
            engine, station_id=station_id, station_name=station_name, tap=tap, now=now
        )
        if found is not None:
            tap_id, card_id = found
            if station_service.touch_due(engine, station_id=station_id):
                await anyio.to_thread.run_sync(_touch, engine, station_id, now)
            public = stored_public(
                tap, tap_id=tap_id, card_id=card_id, station_name=station_name, received_at=now
            )
            return public, True

        def full_path() -> tuple[TapPublic, bool]:
            with sessions() as session:
                return record_tap(
                    session, station_id=station_id, station_name=station_name, tap=tap
                )

        return await anyio.to_thread.run_sync(full_path)

    def any_path() -> tuple[TapPublic, bool]:
        return ingest_tap(
            engine, sessions, station_id=station_id, station_name=station_name, tap=tap
        )

    return await anyio.to_thread.run_sync(any_path)


def _touch(engine: sa.Engine, station_id: int, now: datetime) -> None:
    with engine.begin() as conn:
        station_service.touch(conn, station_id=station_id, now=now)


def _pg_params(*, station_id: int, station_name: str, tap: TapCreate, now: datetime) -> Any:
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
        "channel": events.CHANNEL,
        "station": station_name,
    }


async def _one_statement_pg_async(
    engine: sa.Engine, *, station_id: int, station_name: str, tap: TapCreate, now: datetime
) -> tuple[int, str | None] | None:
    """``_ONE_STATEMENT_PG`` on a pooled autocommit ``AsyncConnection``, prepared at once
    (``prepare=True``) on each connection. None: not the common case, or the server went
    away; either way nothing was stored and ``record_tap`` settles it."""
    import psycopg

    params = _pg_params(station_id=station_id, station_name=station_name, tap=tap, now=now)
    pool = async_pg_pool(engine)
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
        engine.dispose()
        return None
    if row is None:
        return None
    return int(row[0]), row[1]


def _one_statement_pg(
    engine: sa.Engine, *, station_id: int, station_name: str, tap: TapCreate, now: datetime
) -> tuple[int, str | None] | None:
    """Run ``_ONE_STATEMENT_PG`` on a pooled psycopg connection in autocommit (no BEGIN or
    COMMIT round trips); psycopg prepares it after a few runs on each connection."""
    import psycopg

    params = _pg_params(station_id=station_id, station_name=station_name, tap=tap, now=now)
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
        # pool (there is no pre-ping, see tracker.db); record_tap runs on a fresh connection.
        # The statement committed entirely or not at all; a stored tap is found by its key.
        raw.invalidate()
        engine.dispose()
        return None
    finally:
        raw.close()  # back to the pool (a no-op once invalidated)
    if row is None:
        return None
    if station_service.touch_due(engine, station_id=station_id):
        with engine.begin() as conn:
            station_service.touch(conn, station_id=station_id, now=now)
    return int(row[0]), row[1]


def _raw_sqlite(
    engine: sa.Engine, *, station_id: int, tap: TapCreate, now: datetime
) -> tuple[int, str | None] | None:
    stamp = _sqlite_stamp(engine)
    with write_lock(engine):
        raw = engine.raw_connection()
        try:
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
            finally:
                cursor.close()
        finally:
            raw.close()  # back to the pool
        if station_service.touch_due(engine, station_id=station_id):
            with engine.begin() as conn:
                station_service.touch(conn, station_id=station_id, now=now)
    return tap_id, card[1]


_STAMPS: dict[str, Callable[[Any], Any]] = {}


def _sqlite_stamp(engine: sa.Engine) -> Callable[[Any], Any]:
    """The exact bind conversion the ORM applies to a ``UTCDateTime`` on this dialect, so rows
    written here read back (and sort) like rows written by ``record_tap``."""
    key = engine.dialect.name
    stamp = _STAMPS.get(key)
    if stamp is None:
        processor = UTCDateTime().bind_processor(engine.dialect)
        stamp = _STAMPS[key] = processor if processor is not None else (lambda v: v)
    return stamp
