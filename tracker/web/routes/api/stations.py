"""Stations: the heartbeat stations send, and the list operators read.

``POST /api/v1/stations/heartbeat`` (station token, checked before the body is read, like
the tap routes): 200 with the stored heartbeat; 401 missing, unknown or revoked token; 422 a
body outside the ranges (:class:`~tracker.models.HeartbeatCreate`). A heartbeat replaces the
station's previous one; it is how the tracker tells an idle station from a dead one.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from tracker.db import SessionDep
from tracker.models import HeartbeatCreate, HeartbeatPublic, StationOverview
from tracker.services import station_health
from tracker.web.deps import ViewerDep, database, station_of
from tracker.web.zone import operator_zone

router = APIRouter(prefix="/api/v1", tags=["stations"])


@router.get("/stations", response_model=list[StationOverview], summary="Stations and health")
def get_stations(request: Request, session: SessionDep, _user: ViewerDep) -> list[StationOverview]:
    """Every station with its latest heartbeat, online/offline/never, and taps today (in the
    operator's time zone)."""
    return station_health.overview(session, zone=operator_zone(request))


@router.post(
    "/stations/heartbeat",
    response_model=HeartbeatPublic,
    responses={
        401: {"description": "missing, unknown or revoked station token"},
        422: {"description": "a field outside its range"},
    },
    summary="Report the station's health (stations)",
)
async def post_heartbeat(body: HeartbeatCreate, request: Request) -> Response:
    """Async like the tap route: the token comes from the gate's cache and the write runs in
    a worker thread without a request-scoped session (every station, every period)."""
    station = await station_of(request)
    db = database(request)

    def store() -> HeartbeatPublic:
        with db.sessions() as session:
            return station_health.record_heartbeat(session, station_id=station.id, beat=body)

    stored = await db.call(store)
    return Response(content=stored.model_dump_json(), media_type="application/json")
