"""Stations: creation with a one-time token, token authentication, listing.

Only the SHA-256 of a token is stored. ``create_station`` returns the token once; nothing can
show it again (a lost token means ``rotate_token``).
"""

from __future__ import annotations

import time
import weakref
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from tracker.models import Station, StationPublic, UTCDateTime, utcnow
from tracker.security import generate_station_token, hash_token

#: ``last_seen`` is refreshed at most this often per station, so a busy station does not turn
#: every tap into a contended write on its station row.
LAST_SEEN_RESOLUTION = timedelta(seconds=5)


class StationExists(ValueError):
    """A station with this name already exists; pick another name or rotate its token."""


class StationNotFound(LookupError):
    """No station by that name."""


def to_public(station: Station) -> StationPublic:
    assert station.id is not None
    return StationPublic(
        id=station.id,
        name=station.name,
        created=station.created,
        last_seen=station.last_seen,
        has_token=station.token_hash is not None,
    )


def create_station(session: Session, *, name: str) -> tuple[StationPublic, str]:
    """Create a station and return it with its token (shown once, never stored)."""
    name = name.strip()
    if not name:
        raise ValueError("station name must not be empty")
    existing = session.exec(select(Station).where(col(Station.name) == name)).first()
    if existing is not None:
        if existing.token_hash is not None:
            raise StationExists(f"station {name!r} already exists; use another name")
        # A station that so far only wrote locally (no token): give it one.
        token = generate_station_token()
        existing.token_hash = hash_token(token)
        session.add(existing)
        session.commit()
        return to_public(existing), token
    token = generate_station_token()
    station = Station(name=name, token_hash=hash_token(token))
    session.add(station)
    session.commit()
    session.refresh(station)
    return to_public(station), token


def rotate_token(session: Session, *, name: str) -> str:
    """Replace a station's token; the old one stops working immediately."""
    station = session.exec(select(Station).where(col(Station.name) == name)).first()
    if station is None:
        raise StationNotFound(f"no station named {name!r}")
    token = generate_station_token()
    station.token_hash = hash_token(token)
    session.add(station)
    session.commit()
    return token


_BY_TOKEN_HASH = sa.select(
    col(Station.id), col(Station.name), col(Station.created), col(Station.last_seen)
).where(col(Station.token_hash) == sa.bindparam("token_hash"))


def authenticate(session: Session, *, token: str) -> StationPublic | None:
    """The station owning ``token``, or None. Lookup by hash: the hash is the index key, and
    comparing digests of a 256-bit secret leaks nothing useful through timing."""
    if not token:
        return None
    row = session.connection().execute(_BY_TOKEN_HASH, {"token_hash": hash_token(token)}).first()
    if row is None:
        return None
    return StationPublic(
        id=row.id, name=row.name, created=row.created, last_seen=row.last_seen, has_token=True
    )


def get_or_create_station_id(session: Session, *, name: str) -> int:
    """Id of the station called ``name``, inserting it (without a token) if missing.

    Used by local stations writing straight into the database. Safe against two processes
    creating the same station at once (the loser's insert is ignored).
    """
    found = session.execute(sa.select(col(Station.id)).where(col(Station.name) == name)).scalar()
    if found is not None:
        return int(found)
    table = Station.__table__  # type: ignore[attr-defined]
    dialect = session.get_bind().dialect.name
    values = {"name": name, "created": utcnow()}
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        session.execute(pg_insert(table).values(**values).on_conflict_do_nothing())
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        session.execute(sqlite_insert(table).values(**values).on_conflict_do_nothing())
    found = session.execute(
        sa.select(col(Station.id)).where(col(Station.name) == name)
    ).scalar_one()
    return int(found)


_TOUCH = (
    sa.update(Station)
    .where(
        col(Station.id) == sa.bindparam("station_pk"),
        sa.or_(
            col(Station.last_seen).is_(None),
            col(Station.last_seen) < sa.bindparam("stale_before", type_=UTCDateTime()),
        ),
    )
    .values(last_seen=sa.bindparam("now", type_=UTCDateTime()))
)


_recent_touches: weakref.WeakKeyDictionary[Any, dict[int, float]] = weakref.WeakKeyDictionary()


def touch(session: Session, *, station_id: int, now: datetime | None = None) -> None:
    """Record that the station was heard from (throttled, see LAST_SEEN_RESOLUTION).

    A process-local memo skips the statement entirely while this process touched the station
    recently: on PostgreSQL that is one network round trip less per tap.
    """
    now = now or utcnow()
    engine = session.get_bind()
    seen = _recent_touches.setdefault(engine, {})
    tick = time.monotonic()
    if tick - seen.get(station_id, -1e9) < LAST_SEEN_RESOLUTION.total_seconds():
        return
    seen[station_id] = tick
    session.connection().execute(
        _TOUCH,
        {"station_pk": station_id, "now": now, "stale_before": now - LAST_SEEN_RESOLUTION},
    )


def list_stations(session: Session) -> list[StationPublic]:
    rows = session.exec(select(Station).order_by(col(Station.name))).all()
    return [to_public(s) for s in rows]


def station_names(session: Session) -> list[str]:
    return list(session.exec(select(col(Station.name)).order_by(col(Station.name))).all())
