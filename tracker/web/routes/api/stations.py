"""Stations: the heartbeat stations send, and the list operators read.

``POST /api/v1/stations/heartbeat`` (station token, checked before the body is read, like
the tap routes): 200 with the stored heartbeat; 401 missing, unknown or revoked token; 422 a
body outside the ranges (:class:`~tracker.models.HeartbeatCreate`). A heartbeat replaces the
station's previous one; it is how the tracker tells an idle station from a dead one.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from tracker.db import SessionDep
from tracker.models import HeartbeatCreate, HeartbeatPublic, StationOverview
from tracker.services import station_health
from tracker.web.deps import StationDep, ViewerDep
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
def post_heartbeat(
    body: HeartbeatCreate, station: StationDep, session: SessionDep
) -> HeartbeatPublic:
    return station_health.record_heartbeat(session, station_id=station.id, beat=body)
