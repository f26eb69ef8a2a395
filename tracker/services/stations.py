"""Stations: creation with a one-time token, token authentication, listing.

Only the SHA-256 of a token is stored. ``create_station`` returns the token once; nothing can
show it again (a lost token means ``rotate_token``).
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, select

from tracker.db import Database, database_of
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
    """Replace a station's token. The old one stops working at once in this process and within
    :data:`TOKEN_CACHE_SECONDS` in every other tracker process (see :func:`authenticate`)."""
    station = session.exec(select(Station).where(col(Station.name) == name)).first()
    if station is None:
        raise StationNotFound(f"no station named {name!r}; `tracker stations list` shows them")
    old_hash = station.token_hash
    token = generate_station_token()
    station.token_hash = hash_token(token)
    session.add(station)
    session.commit()
    if old_hash is not None:
        token_cache(database_of(session)).forget(old_hash)
    return token


def revoke_token(session: Session, *, name: str) -> None:
    """Take a station's token away (it keeps its history). Like :func:`rotate_token`, the old
    token stops working at once here and within :data:`TOKEN_CACHE_SECONDS` elsewhere."""
    station = session.exec(select(Station).where(col(Station.name) == name)).first()
    if station is None:
        raise StationNotFound(f"no station named {name!r}; `tracker stations list` shows them")
    old_hash = station.token_hash
    station.token_hash = None
    session.add(station)
    session.commit()
    if old_hash is not None:
        token_cache(database_of(session)).forget(old_hash)


_BY_TOKEN_HASH = sa.select(
    col(Station.id), col(Station.name), col(Station.created), col(Station.last_seen)
).where(col(Station.token_hash) == sa.bindparam("token_hash"))


#: How long a successful token lookup is reused without asking the database. A token revoked
#: or rotated by another process (or straight in the database) keeps working at most this long;
#: :func:`rotate_token` in this process forgets the old token at once.
TOKEN_CACHE_SECONDS = 2.0
#: Entries kept at most per database; the cache is emptied when it would grow past this.
TOKEN_CACHE_SIZE = 10_000


_clock = time.monotonic  # the token cache's clock (tests move it forward)


class TokenCache:
    """Known token hashes → (station, expiry), one per :class:`~tracker.db.Database`.

    Why: every tap carries the station token; hashing it and looking it up cost a database
    round trip per tap. Only successful lookups are kept, so unknown tokens cannot fill it, and
    the key is the token's SHA-256, never the token.
    """

    def __init__(self) -> None:
        self.entries: dict[str, tuple[StationPublic, float]] = {}
        self.lock = threading.Lock()

    def get(self, token_hash: str) -> StationPublic | None:
        entry = self.entries.get(token_hash)
        if entry is None or entry[1] < _clock():
            return None
        return entry[0]

    def put(self, token_hash: str, station: StationPublic) -> None:
        with self.lock:
            if len(self.entries) >= TOKEN_CACHE_SIZE:
                self.entries.clear()
            self.entries[token_hash] = (station, _clock() + TOKEN_CACHE_SECONDS)

    def forget(self, token_hash: str) -> None:
        """Drop a token (it was rotated or revoked)."""
        with self.lock:
            self.entries.pop(token_hash, None)


def token_cache(database: Database) -> TokenCache:
    return database.shared("stations.token_cache", TokenCache)  # type: ignore[no-any-return]


def cached_station(database: Database, token: str) -> StationPublic | None:
    """The station of a token :func:`authenticate` accepted in the last
    :data:`TOKEN_CACHE_SECONDS`, without touching the database; None when not cached."""
    return token_cache(database).get(hash_token(token))


def authenticate(session: Session, *, token: str) -> StationPublic | None:
    """The station owning ``token``, or None. Lookup by hash: the hash is the index key, and
    comparing digests of a 256-bit secret leaks nothing useful through timing.

    A hit is cached for :data:`TOKEN_CACHE_SECONDS` (the station's ``last_seen`` in the answer
    may be that much older than the row)."""
    if not token:
        return None
    token_hash = hash_token(token)
    cache = token_cache(database_of(session))
    station = cache.get(token_hash)
    if station is not None:
        return station
    row = session.connection().execute(_BY_TOKEN_HASH, {"token_hash": token_hash}).first()
    if row is None:
        return None
    station = StationPublic(
        id=row.id, name=row.name, created=row.created, last_seen=row.last_seen, has_token=True
    )
    cache.put(token_hash, station)
    return station


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


def _recent_touches(database: Database) -> dict[int, float]:
    return database.shared("stations.recent_touches", dict)  # type: ignore[no-any-return]


def touch_due(database: Database, *, station_id: int) -> bool:
    """Whether :func:`touch` would write now (lets a caller skip opening a transaction)."""
    seen = _recent_touches(database)
    return time.monotonic() - seen.get(station_id, -1e9) >= LAST_SEEN_RESOLUTION.total_seconds()


def touch(
    database: Database,
    conn: Session | sa.Connection,
    *,
    station_id: int,
    now: datetime | None = None,
) -> None:
    """Record that the station was heard from (throttled, see LAST_SEEN_RESOLUTION).

    A memo on ``database`` skips the statement entirely while this process touched the station
    recently: on PostgreSQL that is one network round trip less per tap.
    """
    now = now or utcnow()
    if not touch_due(database, station_id=station_id):
        return
    _recent_touches(database)[station_id] = time.monotonic()
    if isinstance(conn, Session):
        conn = conn.connection()
    conn.execute(
        _TOUCH,
        {"station_pk": station_id, "now": now, "stale_before": now - LAST_SEEN_RESOLUTION},
    )


def station_names(session: Session) -> list[str]:
    return list(session.exec(select(col(Station.name)).order_by(col(Station.name))).all())
