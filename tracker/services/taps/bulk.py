"""A run of common-case taps in one transaction, set-based (used by ``TapRecorder.record_many``).

Why: a batch recorded tap by tap costs a transaction per tap; on PostgreSQL that is a commit
(a WAL flush) and a round trip each, which held a catching-up station to ~1,000 records/s.
Here a run costs a handful of statements whatever its length:

1. the run's cards, locked (``SELECT … FOR UPDATE`` in uid order on PostgreSQL; SQLite's
   ``BEGIN IMMEDIATE`` under the tracker's write lock);
2. :func:`~tracker.services.taps.plan.plan_run` decides in Python what recording the taps one
   by one would answer (looking up idempotency keys only for taps whose counter did not move
   up), and where the general path must take over;
3. the unknown cards, the taps (on PostgreSQL one ``INSERT … SELECT … ON CONFLICT DO NOTHING
   RETURNING`` for the run, announcing each tap with ``pg_notify``, delivered on commit), one
   compare-and-set result per card (its highest counter), then one commit.

The compare-and-set is the same as the single path's: the locked rows are what the plan
compared against, so a concurrent writer either waits for the run or the run waits for it.
Anything the plan did not foresee (a key taken by another writer meanwhile, a card created
meanwhile) rolls the whole run back and it is planned again up to the tap before: nothing
half-done is ever committed, and the general path answers the tap that stopped it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import psycopg

from tracker.db import Database
from tracker.events.notify import CHANNEL
from tracker.models import TapCreate
from tracker.services.filters import as_utc
from tracker.services.taps.fast import INSERT_TAP_SQLITE, utc_stamp
from tracker.services.taps.plan import CardState, Plan, StoredKey, answers, plan_run


class _Cut(Exception):
    """The run must stop before tap ``at`` (rolled back; planned again up to there)."""

    def __init__(self, at: int) -> None:
        super().__init__(at)
        self.at = at


class BulkPath:
    """Stores the longest prefix of a run it can; ``store`` answers ``(tap_id, created)`` for
    that prefix (possibly empty: the general path answers the next tap)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def store(
        self, taps: Sequence[TapCreate], *, station_id: int, station_name: str, now: datetime
    ) -> list[tuple[int, bool]]:
        limit = len(taps)
        while limit > 0:
            try:
                return self._attempt(
                    taps[:limit], station_id=station_id, station_name=station_name, now=now
                )
            except _Cut as cut:
                limit = cut.at
        return []

    def _attempt(
        self, taps: Sequence[TapCreate], *, station_id: int, station_name: str, now: datetime
    ) -> list[tuple[int, bool]]:
        raise NotImplementedError

    @staticmethod
    def _plan(
        taps: Sequence[TapCreate],
        cards: dict[str, CardState],
        station_id: int,
        look_up: Callable[[list[str]], dict[str, StoredKey]],
    ) -> Plan:
        plan = plan_run(taps, cards, station_id=station_id)
        if plan.missing_keys:
            stored = look_up(sorted(set(plan.missing_keys)))
            plan = plan_run(taps, cards, station_id=station_id, stored=stored)
        return plan


# --- PostgreSQL --------------------------------------------------------------------------------

# Lists travel as one JSON text each: psycopg dumps Python lists into arrays in Python (quoting
# every string), which cost more server CPU than the rest of the run together (py-spy).
_PG_CARDS = (
    "SELECT uid, id, last_counter, status = 'blocked', card_id FROM card"
    " WHERE uid = ANY(ARRAY(SELECT json_array_elements_text(%(uids)s::json)))"
    " ORDER BY uid FOR UPDATE"
)
_PG_KEYS = (
    "SELECT idempotency_key, id, station_pk FROM tap"
    " WHERE idempotency_key = ANY(ARRAY(SELECT json_array_elements_text(%(keys)s::json)))"
)
_PG_NEW_CARDS = """
    INSERT INTO card (uid, card_id, status, first_seen, last_seen)
    SELECT u, c, 'active', %(now)s, %(now)s
      FROM json_to_recordset(%(cards)s::json) AS v(u text, c text)
    ON CONFLICT (uid) DO NOTHING
    RETURNING uid, id
"""
# Inserted in the run's order (ids rise with it); a taken key is skipped and shows up as
# missing from the answer. Each stored tap is announced on commit, as the single path does.
_PG_TAPS = """
    WITH ins AS (
        INSERT INTO tap (card_pk, station_pk, counter, station_time, received_at, outcome,
                         reason, issuer_host, idempotency_key, verified)
        SELECT c, %(station_pk)s, n, t, %(now)s, 'accepted', r, h, k, true
          FROM json_to_recordset(%(taps)s::json)
               AS v(o int, c bigint, n bigint, t timestamptz, r text, h text, k text)
         ORDER BY o
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING id, idempotency_key, card_pk, counter
    )
    SELECT ins.idempotency_key, ins.id,
           pg_notify(%(channel)s, json_build_object(
               'topic', 'tap',
               'data', json_build_object(
                   'id', ins.id, 'uid', card.uid, 'station', CAST(%(station)s AS text),
                   'counter', ins.counter, 'outcome', 'accepted'))::text)
      FROM ins JOIN card ON card.id = ins.card_pk
"""
_PG_CARD_UPDATE = """
    UPDATE card SET last_counter = v.n, last_seen = %(now)s,
                    card_id = coalesce(card.card_id, v.c)
      FROM json_to_recordset(%(cards)s::json) AS v(pk bigint, n bigint, c text)
     WHERE card.id = v.pk
"""


class PgBulkPath(BulkPath):
    """The run on one pooled psycopg connection, in one transaction."""

    def _attempt(
        self, taps: Sequence[TapCreate], *, station_id: int, station_name: str, now: datetime
    ) -> list[tuple[int, bool]]:
        engine = self.database.engine
        raw = engine.raw_connection()
        driver: Any = raw.driver_connection
        try:
            with driver.cursor() as cur:
                try:
                    found = self._run(cur, taps, station_id=station_id,
                                      station_name=station_name, now=now)
                except BaseException:
                    if not driver.broken:
                        driver.rollback()
                    raise
                driver.commit()
                return found
        except psycopg.OperationalError:
            if not driver.broken:
                raise
            # The server went away (restart): every pooled connection is dead. The run
            # committed entirely or not at all; the general path answers on a fresh pool.
            raw.invalidate()
            engine.dispose()
            return []
        finally:
            raw.close()

    def _run(
        self, cur: Any, taps: Sequence[TapCreate], *, station_id: int, station_name: str,
        now: datetime,
    ) -> list[tuple[int, bool]]:
        uids = sorted({t.card_uid for t in taps})
        cards = {
            row[0]: CardState(int(row[1]), row[2], bool(row[3]), row[4])
            for row in cur.execute(_PG_CARDS, {"uids": json.dumps(uids)}).fetchall()
        }

        def look_up(keys: list[str]) -> dict[str, StoredKey]:
            rows = cur.execute(_PG_KEYS, {"keys": json.dumps(keys)}).fetchall()
            return {r[0]: StoredKey(int(r[1]), int(r[2])) for r in rows}

        plan = self._plan(taps, cards, station_id, look_up)
        if not plan.steps:
            return []
        pks = {uid: card.pk for uid, card in cards.items()}
        if plan.new_cards:
            made = cur.execute(_PG_NEW_CARDS, {"now": now, "cards": json.dumps(
                [{"u": uid, "c": plan.cards[uid].card_id} for uid in plan.new_cards]
            )}).fetchall()
            pks.update({row[0]: int(row[1]) for row in made})
            for uid in plan.new_cards:
                if uid not in pks:  # created by another writer since the lock: plan again
                    raise _Cut(next(i for i, t in enumerate(taps) if t.card_uid == uid))
        rows: list[dict[str, Any]] = []
        for i in plan.inserts:
            tap = taps[i]
            moment = as_utc(tap.station_time)
            rows.append({"o": len(rows), "c": pks[tap.card_uid], "n": tap.counter,
                         "t": moment.isoformat() if moment else None, "r": tap.reason,
                         "h": tap.issuer_host, "k": tap.idempotency_key})
        stored = {r[0]: int(r[1]) for r in cur.execute(_PG_TAPS, {
            "station_pk": station_id, "now": now, "taps": json.dumps(rows),
            "channel": CHANNEL, "station": station_name,
        }).fetchall()}
        ids: dict[int, int] = {}
        for i in plan.inserts:
            tap_id = stored.get(taps[i].idempotency_key)
            if tap_id is None:  # the key was taken since the plan: stop before this tap
                raise _Cut(i)
            ids[i] = tap_id
        cur.execute(_PG_CARD_UPDATE, {"now": now, "cards": json.dumps([
            {"pk": pks[uid], "n": change.last_counter, "c": change.card_id}
            for uid, change in plan.cards.items()
        ])})
        return answers(plan, ids)


# --- SQLite ------------------------------------------------------------------------------------

_SQLITE_CARD = (
    "INSERT INTO card (uid, card_id, status, first_seen, last_seen)"
    " VALUES (?, ?, 'active', ?, ?)"
)
_SQLITE_CARD_UPDATE = (
    "UPDATE card SET last_counter = ?, last_seen = ?, card_id = coalesce(card_id, ?)"
    " WHERE id = ?"
)
#: Bound parameters per ``IN (…)`` list (SQLite allows 32,766 since 3.32; stay far below).
_CHUNK = 500


class SqliteBulkPath(BulkPath):
    """The run on the raw ``sqlite3`` connection, ``BEGIN IMMEDIATE``; the caller holds the
    tracker's write lock. The taps go in one statement each: SQLite has no round trip to
    save, only the commit and the ORM around it."""

    def __init__(self, database: Database) -> None:
        super().__init__(database)
        self._stamp = utc_stamp(database)

    def _attempt(
        self, taps: Sequence[TapCreate], *, station_id: int, station_name: str, now: datetime
    ) -> list[tuple[int, bool]]:
        raw = self.database.engine.raw_connection()
        try:
            cursor: Any = raw.cursor()
            try:
                cursor.execute("BEGIN IMMEDIATE")
                try:
                    found = self._run(cursor, taps, station_id=station_id, now=now)
                except BaseException:
                    raw.rollback()
                    raise
                raw.commit()
                return found
            finally:
                cursor.close()
        finally:
            raw.close()

    def _run(
        self, cursor: Any, taps: Sequence[TapCreate], *, station_id: int, now: datetime
    ) -> list[tuple[int, bool]]:
        uids = sorted({t.card_uid for t in taps})
        cards: dict[str, CardState] = {}
        for part in _chunks(uids):
            rows = cursor.execute(
                "SELECT uid, id, last_counter, status = 'blocked', card_id FROM card"
                f" WHERE uid IN ({','.join('?' * len(part))})",
                part,
            ).fetchall()
            cards.update({r[0]: CardState(int(r[1]), r[2], bool(r[3]), r[4]) for r in rows})

        def look_up(keys: list[str]) -> dict[str, StoredKey]:
            stored: dict[str, StoredKey] = {}
            for part in _chunks(keys):
                for r in cursor.execute(
                    "SELECT idempotency_key, id, station_pk FROM tap"
                    f" WHERE idempotency_key IN ({','.join('?' * len(part))})",
                    part,
                ):
                    stored[r[0]] = StoredKey(int(r[1]), int(r[2]))
            return stored

        plan = self._plan(taps, cards, station_id, look_up)
        if not plan.steps:
            return []
        stamp = self._stamp
        at = stamp(now)
        pks = {uid: card.pk for uid, card in cards.items()}
        for uid in plan.new_cards:  # nobody else can create it: the write lock is ours
            cursor.execute(_SQLITE_CARD, (uid, plan.cards[uid].card_id, at, at))
            pks[uid] = int(cursor.lastrowid)
        ids: dict[int, int] = {}
        for i in plan.inserts:
            tap = taps[i]
            try:
                cursor.execute(INSERT_TAP_SQLITE, (
                    pks[tap.card_uid], station_id, tap.counter, stamp(tap.station_time), at,
                    tap.reason, tap.issuer_host, tap.idempotency_key,
                ))
            except sqlite3.IntegrityError:
                raise _Cut(i) from None  # the key is taken: the general path answers it
            ids[i] = int(cursor.lastrowid)
        cursor.executemany(_SQLITE_CARD_UPDATE, [
            (change.last_counter, at, change.card_id, pks[uid])
            for uid, change in plan.cards.items()
        ])
        return answers(plan, ids)


def _chunks(items: list[str]) -> list[list[str]]:
    return [items[i:i + _CHUNK] for i in range(0, len(items), _CHUNK)]
