"""Station health: the latest heartbeat of each station, and the overview operators read.

Why a heartbeat and not ``last_seen``: a station that has no taps to send is silent, so its
last tap says nothing about whether it is alive. Every station sends a heartbeat each period
(its outbox depth, dead records, readers, version); the tracker keeps the latest one per
station and calls the station offline after :data:`~tracker.models.station.OFFLINE_AFTER_PERIODS`
of the station's own periods without one, by the tracker's clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

import sqlalchemy as sa
from sqlmodel import Session, col

from tracker import zones
from tracker.db import database_of
from tracker.models import (
    HeartbeatCreate,
    HeartbeatPublic,
    Station,
    StationHeartbeat,
    StationOverview,
    Tap,
    utcnow,
)
from tracker.models.station import station_state
from tracker.services import stations as station_service
from tracker.services.sorting import Sort, order_by, parse_sort

_COLUMNS = [c.name for c in StationHeartbeat.__table__.columns  # type: ignore[attr-defined]
            if c.name != "station_pk"]


def record_heartbeat(
    session: Session, *, station_id: int, beat: HeartbeatCreate, now: datetime | None = None
) -> HeartbeatPublic:
    """Replace the station's heartbeat with ``beat`` (received ``now``) and note it was seen."""
    now = now or utcnow()
    values = {**beat.model_dump(), "received_at": now, "station_pk": station_id}
    table = StationHeartbeat.__table__  # type: ignore[attr-defined]
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(table).values(**values)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table).values(**values)  # type: ignore[assignment]
    stmt = stmt.on_conflict_do_update(  # type: ignore[assignment]
        index_elements=["station_pk"], set_={c: stmt.excluded[c] for c in _COLUMNS}
    )
    database = database_of(session)
    with database.write_lock:  # SQLite: queue behind other writers instead of busy-waiting
        try:
            session.execute(stmt)
            station_service.touch(database, session, station_id=station_id, now=now)
            session.commit()
        except BaseException:
            session.rollback()
            raise
    return HeartbeatPublic.model_validate({**beat.model_dump(), "received_at": now})


def taps_since(session: Session, start: datetime) -> dict[int, int]:
    """Taps received per station since ``start`` (one range scan of ``ix_tap_received``)."""
    rows = session.execute(
        sa.select(col(Tap.station_pk), sa.func.count())
        .where(col(Tap.received_at) >= start)
        .group_by(col(Tap.station_pk))
    ).all()
    return {int(pk): int(n) for pk, n in rows}


def overview(
    session: Session,
    *,
    zone: tzinfo = UTC,
    now: datetime | None = None,
    count_taps: bool = True,
    sort: Sort | None = None,
) -> list[StationOverview]:
    """Every station (by name unless ``sort`` says otherwise) with its latest heartbeat, its
    state now and (``count_taps``) its taps since midnight in ``zone``."""
    now = now or utcnow()
    hb = StationHeartbeat.__table__  # type: ignore[attr-defined]
    st = Station.__table__  # type: ignore[attr-defined]
    # Plain rows, one validation per station: at 1,000 stations ORM objects and a model per
    # part cost three times as much, on every page view and every scrape.
    rows = session.execute(
        sa.select(st.c.id, st.c.name, st.c.created, st.c.last_seen,
                  (st.c.token_hash.is_not(None)).label("has_token"),
                  *[hb.c[c] for c in _COLUMNS])
        .select_from(st.outerjoin(hb, hb.c.station_pk == st.c.id))
        .order_by(*order_by(sort or parse_sort("stations", None, None)))
    ).mappings().all()
    today = taps_since(session, zones.today_start(zone, now=now)) if count_taps else {}
    found = []
    for row in rows:
        beat = None
        if row["received_at"] is not None:
            beat = HeartbeatPublic.model_validate({c: row[c] for c in _COLUMNS})
        found.append(StationOverview.model_validate({
            "id": row["id"], "name": row["name"], "created": row["created"],
            "last_seen": row["last_seen"], "has_token": bool(row["has_token"]),
            "heartbeat": beat, "state": station_state(beat, now),
            "taps_today": today.get(row["id"], 0),
        }))
    return found


def find(session: Session, name: str, *, zone: tzinfo = UTC) -> StationOverview | None:
    """One station's overview by name (None: no such station), without today's tap count
    (its callers show the station's state and token, not its taps)."""
    for item in overview(session, zone=zone, count_taps=False):
        if item.name == name:
            return item
    return None
