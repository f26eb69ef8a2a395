"""The stations page: list, and (admins) add a station and show its token once."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from tracker.db import SessionDep
from tracker.services import audit
from tracker.services import stations as station_service
from tracker.web.auth import Admin, CSRFChecked, CurrentUser, Viewer
from tracker.web.deps import actor_of
from tracker.web.routes.pages.errors import PageRoute
from tracker.web.routes.pages.listing import page_sort, sort_links
from tracker.web.templating import render

log = logging.getLogger(__name__)
router = APIRouter(route_class=PageRoute, include_in_schema=False)


def _stations_page(
    request: Request,
    session: Any,
    user: CurrentUser,
    *,
    new_token: str = "",
    new_station: str = "",
    error: str = "",
    status_code: int = 200,
) -> Response:
    order = page_sort(request, "stations")
    return render(
        request,
        "stations.html",
        {
            "title": "Stations",
            "stations": station_service.list_stations(session, sort=order),
            "sorting": sort_links("/stations", {}, order),
            "new_token": new_token,
            "new_station": new_station,
            "error": error,
        },
        user=user,
        status_code=status_code,
    )


@router.get("/stations")
def stations_page(request: Request, session: SessionDep, user: Viewer) -> Response:
    return _stations_page(request, session, user)


@router.post("/stations", dependencies=[CSRFChecked])
def add_station(
    request: Request,
    session: SessionDep,
    user: Admin,
    name: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Create a station and show its token once; it is not stored and cannot be shown again."""
    try:
        station, token = station_service.create_station(session, name=name)
    except station_service.StationExists as exc:
        return _stations_page(request, session, user, error=str(exc), status_code=409)
    except ValueError as exc:
        return _stations_page(request, session, user, error=str(exc), status_code=400)
    log.info("%s added station %s", user.username, station.name)
    audit.record(
        session,
        actor=actor_of(request, user),
        action="station.add",
        target_type="station",
        target_id=station.name,
    )
    return _stations_page(request, session, user, new_token=token, new_station=station.name)
