"""Stations, for operators."""

from __future__ import annotations

from fastapi import APIRouter

from tracker.db import SessionDep
from tracker.models import StationPublic
from tracker.services import stations as station_service
from tracker.web.deps import ViewerDep

router = APIRouter(prefix="/api/v1", tags=["stations"])


@router.get("/stations", response_model=list[StationPublic], summary="Stations")
def get_stations(session: SessionDep, _user: ViewerDep) -> list[StationPublic]:
    return station_service.list_stations(session)
