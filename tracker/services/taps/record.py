"""Recording taps (the ingest path) and listing them.

The replay guard is one SQL statement: an accepted tap moves the card's ``last_counter``
forward with a compare-and-set ::

    UPDATE card SET last_counter = :new, last_seen = :now ...
     WHERE uid = :uid AND status <> 'blocked'
       AND (last_counter IS NULL OR last_counter < :new)
    RETURNING id, card_id

(``uid`` is unique, so this is the per-row compare-and-set of the interface; folding the
blocked check and the card look-up into it saves a round trip per tap). No row back means
another tap already used this counter (or a higher one), or the card is blocked or unknown;
only then do we look closer. The
database serialises the two writers (a row lock on PostgreSQL, the write lock on SQLite), so
two stations presenting the same card and counter at the same instant get exactly one success,
with no lock held in Python and no read-then-write window.

Everything a request writes (card creation, counter, tap row, station ``last_seen``, the event)
is one transaction: a refused request (409/403) stores nothing. Callers enter through
:class:`tracker.services.taps.TapRecorder`, which stores the common case in fewer steps
(``fast.py``) and hands every other case to :func:`record_tap`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from tracker.db import Database, database_of
from tracker.events.notify import notify
from tracker.models import (
    Card,
    CardStatus,
    Station,
    Tap,
    TapCreate,
    TapOutcome,
    TapPublic,
    UTCDateTime,
    utcnow,
)
from tracker.services import stations as station_service
from tracker.services.taps.rows import row_to_public, stored_public, tap_select


class TapRefused(Exception):
    """Base of the reasons a tap report is not stored."""


class CounterConflict(TapRefused):
    """The counter is not above the card's last accepted counter (a replay or a race lost),
    or the idempotency key was already used by another station."""

    def __init__(self, last_counter: int | None) -> None:
        super().__init__(f"counter not increasing (last accepted counter {last_counter})")
        self.last_counter = last_counter


class CardBlocked(TapRefused):
    """An accepted tap was reported for a card an operator blocked."""

    def __init__(self, uid: str) -> None:
        super().__init__(f"card {uid} is blocked")
        self.uid = uid


# ---------------------------------------------------------------------------------------------
# Ingest


@dataclass(frozen=True)
class _Existing:
    tap: TapPublic
    station_pk: int


# The ingest path runs these prepared Core statements on the session's connection: building
# and ORM-executing statements per tap cost more than the SQL itself (measured in bench/).
_card_values = {
    "uid": sa.bindparam("uid"),
    "card_id": sa.bindparam("card_id"),
    "status": CardStatus.active.value,
    "first_seen": sa.bindparam("now", type_=UTCDateTime()),
    "last_seen": sa.bindparam("now", type_=UTCDateTime()),
}
_CARD_TABLE: sa.Table = Card.__table__  # type: ignore[attr-defined]
_UPSERT_CARD = {
    "postgresql": pg_insert(_CARD_TABLE).values(**_card_values).on_conflict_do_nothing(),
    "sqlite": sqlite_insert(_CARD_TABLE).values(**_card_values).on_conflict_do_nothing(),
}
_FIND_KEY = tap_select().where(col(Tap.idempotency_key) == sa.bindparam("key"))
_CARD_ROW = sa.select(col(Card.id), col(Card.status), col(Card.card_id), col(Card.alias)).where(
    col(Card.uid) == sa.bindparam("uid")
)
_LAST_COUNTER = sa.select(col(Card.last_counter)).where(col(Card.uid) == sa.bindparam("uid"))
_CAS_COUNTER = (
    sa.update(Card)
    .where(
        col(Card.uid) == sa.bindparam("card_uid"),
        col(Card.status) != CardStatus.blocked.value,
        sa.or_(
            col(Card.last_counter).is_(None),
            col(Card.last_counter) < sa.bindparam("new_counter"),
        ),
    )
    .values(
        last_counter=sa.bindparam("new_counter"),
        last_seen=sa.bindparam("now", type_=UTCDateTime()),
        card_id=sa.func.coalesce(col(Card.card_id), sa.bindparam("new_card_id")),
    )
    .returning(col(Card.id), col(Card.card_id), col(Card.alias))
)
_SEEN = (
    sa.update(Card)
    .where(col(Card.uid) == sa.bindparam("card_uid"))
    .values(last_seen=sa.bindparam("now", type_=UTCDateTime()))
    .returning(col(Card.id), col(Card.card_id), col(Card.alias))
)


def _advance(conn: sa.Connection, *, tap: TapCreate, now: datetime) -> Any:
    """Run the compare-and-set (accepted and verified) or the seen-mark (refused, or an
    unverified tap: its counter proves nothing); the card row or None."""
    if tap.outcome == TapOutcome.accepted and tap.verified:
        return conn.execute(
            _CAS_COUNTER,
            {
                "card_uid": tap.card_uid,
                "new_counter": tap.counter,
                "now": now,
                "new_card_id": tap.card_id,
            },
        ).first()
    return conn.execute(_SEEN, {"card_uid": tap.card_uid, "now": now}).first()


_INSERT_TAP = sa.insert(Tap).returning(col(Tap.id))
_STATION_NAME = sa.select(col(Station.name)).where(col(Station.id) == sa.bindparam("station_pk"))


def _find_by_key(conn: sa.Connection, key: str) -> _Existing | None:
    row = conn.execute(_FIND_KEY, {"key": key}).first()
    if row is None:
        return None
    return _Existing(tap=row_to_public(row), station_pk=row.station_pk)


def _last_counter(conn: sa.Connection, uid: str) -> int | None:
    value = conn.execute(_LAST_COUNTER, {"uid": uid}).scalar()
    return None if value is None else int(value)


def record_tap(
    session: Session,
    *,
    station_name: str | None = None,
    station_id: int | None = None,
    tap: TapCreate,
) -> tuple[TapPublic, bool]:
    """Store one tap; return ``(tap, created)``. Commits (or rolls back) the session.

    ``created`` is False when this station already stored a tap with the same idempotency key
    (a retry): the stored record is returned and nothing changes. Raises :class:`CounterConflict`
    or :class:`CardBlocked` (nothing stored). Give ``station_name`` (a local station; its row is
    created, and committed, if missing) or ``station_id`` (an authenticated remote station; a
    ``station_name`` given with it saves a lookup).
    """
    database = database_of(session)
    with database.write_lock:
        if station_id is None:
            if not station_name:
                raise ValueError("record_tap needs station_name or station_id")
            station_id = station_service.get_or_create_station_id(session, name=station_name)
            session.commit()
        try:
            result = _record(
                database, session, station_id=station_id, station_name=station_name, tap=tap
            )
            session.commit()
            return result
        except TapRefused:
            session.rollback()
            raise
        except IntegrityError:
            # Lost a race on the idempotency key (the same report posted twice at once).
            session.rollback()
    return _resolve_after_race(session, station_id=station_id, tap=tap)


def _resolve_after_race(
    session: Session, *, station_id: int, tap: TapCreate
) -> tuple[TapPublic, bool]:
    conn = session.connection()
    existing = _find_by_key(conn, tap.idempotency_key)
    last = _last_counter(conn, tap.card_uid)
    session.rollback()
    if existing is not None and existing.station_pk == station_id:
        return existing.tap, False
    raise CounterConflict(last)


def _record(
    database: Database,
    session: Session,
    *,
    station_id: int,
    station_name: str | None,
    tap: TapCreate,
) -> tuple[TapPublic, bool]:
    conn = session.connection()
    now = utcnow()
    # 1. The replay guard and the card in one statement on the common path: an accepted tap
    #    moves the counter of an existing, unblocked card (compare-and-set); a refused tap only
    #    marks the card seen. No row back means: unknown card, blocked card, or replay.
    card = _advance(conn, tap=tap, now=now)
    if card is None:
        found = conn.execute(_CARD_ROW, {"uid": tap.card_uid}).first()
        if found is None:
            # Unknown cards are created on first sight (status active); a concurrent creator
            # wins silently and we go on with its row.
            dialect = "postgresql" if conn.dialect.name == "postgresql" else "sqlite"
            conn.execute(
                _UPSERT_CARD[dialect], {"uid": tap.card_uid, "card_id": tap.card_id, "now": now}
            )
            card = _advance(conn, tap=tap, now=now)
            found = conn.execute(_CARD_ROW, {"uid": tap.card_uid}).one()
    if card is None:
        # A retry of a stored tap is recognised here (its counter is not above itself) or at
        # the insert below (unique idempotency key), so the common path never looks the key up.
        existing = _find_by_key(conn, tap.idempotency_key)
        if existing is not None and existing.station_pk == station_id:
            return existing.tap, False
        if (
            found is not None
            and found.status == CardStatus.blocked
            and tap.outcome == TapOutcome.accepted
            and tap.verified
        ):
            raise CardBlocked(tap.card_uid)
        raise CounterConflict(_last_counter(conn, tap.card_uid))

    # 3. The tap itself (IntegrityError on a known key: record_tap sorts it out), then the
    #    station's heartbeat and the live event.
    inserted = conn.execute(
        _INSERT_TAP,
        {
            "card_pk": card.id,
            "station_pk": station_id,
            "counter": tap.counter,
            "station_time": tap.station_time,
            "received_at": now,
            "outcome": tap.outcome.value,
            "reason": tap.reason,
            "issuer_host": tap.issuer_host,
            "idempotency_key": tap.idempotency_key,
            "verified": tap.verified,
        },
    ).scalar_one()
    tap_id = int(cast(int, inserted))
    station_service.touch(database, conn, station_id=station_id, now=now)
    if station_name is None:
        station_name = str(conn.execute(_STATION_NAME, {"station_pk": station_id}).scalar_one())
    public = stored_public(
        tap,
        tap_id=tap_id,
        card_id=card.card_id,
        card_alias=card.alias,
        station_name=station_name,
        received_at=now,
    )
    notify(session, "tap", tap_event(public))
    return public, True


def tap_event(tap: TapPublic) -> dict[str, object]:
    """What a tap's notification carries: the id (the watcher loads the row by it) and a few
    fields for listeners outside the tracker (``psql``'s LISTEN)."""
    return {
        "id": tap.id,
        "uid": tap.card_uid,
        "station": tap.station,
        "counter": tap.counter,
        "outcome": tap.outcome.value,
    }
