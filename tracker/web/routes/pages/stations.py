"""The stations page: health from each station's heartbeat, and (admins) add a station,
rotate or revoke its token — each shown once, after a confirmation step.

Rotating and revoking call the same service functions as ``tracker stations rotate|revoke``
(:mod:`tracker.services.stations`), so the old token stops working at once in this process and
within two seconds in every other one. A new token is rendered straight into the answer to the
POST (never into a URL or a redirect) and cannot be shown again.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from tracker.db import SessionDep
from tracker.services import audit, station_health
from tracker.services import stations as station_service
from tracker.web.auth import Admin, CSRFChecked, CurrentUser, Viewer
from tracker.web.deps import actor_of
from tracker.web.routes.pages.errors import PageRoute
from tracker.web.routes.pages.listing import page_sort, sort_links
from tracker.web.templating import render
from tracker.web.zone import operator_zone

log = logging.getLogger(__name__)
router = APIRouter(route_class=PageRoute, include_in_schema=False)

TokenAction = Literal["rotate", "revoke"]
NameField = Annotated[str, Form(min_length=1, max_length=100)]


def _stations_page(
    request: Request,
    session: Any,
    user: CurrentUser,
    *,
    new_token: str = "",
    new_station: str = "",
    token_verb: str = "added",
    notice: str = "",
    error: str = "",
    status_code: int = 200,
) -> Response:
    order = page_sort(request, "stations")
    return render(
        request,
        "stations.html",
        {
            "title": "Stations",
            "stations": station_health.overview(session, zone=operator_zone(request), sort=order),
            "sorting": sort_links("/stations", {}, order),
            "new_token": new_token,
            "new_station": new_station,
            "token_verb": token_verb,
            "notice": notice,
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


@router.get("/stations/token")
def confirm_token_change(
    request: Request,
    session: SessionDep,
    user: Admin,
    action: TokenAction,
    name: Annotated[str, Query(min_length=1, max_length=100)],
) -> Response:
    """The confirmation step: what rotating or revoking does to the running station."""
    found = station_health.find(session, name, zone=operator_zone(request))
    if found is None:
        return _stations_page(request, session, user, status_code=404,
                              error=f"no station named {name!r}")
    return render(
        request, "station_token.html",
        {"title": f"{action.capitalize()} token · {name}", "station": found, "action": action},
        user=user,
    )


@router.post("/stations/rotate", dependencies=[CSRFChecked])
def rotate_token(request: Request, session: SessionDep, user: Admin, name: NameField) -> Response:
    """A new token, shown once; the old one stops working (the station must be given this)."""
    try:
        token = station_service.rotate_token(session, name=name)
    except station_service.StationNotFound as exc:
        return _stations_page(request, session, user, error=str(exc), status_code=404)
    log.info("%s rotated the token of station %s", user.username, name)
    audit.record(session, actor=actor_of(request, user), action="station.rotate",
                 target_type="station", target_id=name)
    return _stations_page(request, session, user, new_token=token, new_station=name,
                          token_verb="has a new token")


@router.post("/stations/revoke", dependencies=[CSRFChecked])
def revoke_token(request: Request, session: SessionDep, user: Admin, name: NameField) -> Response:
    """Take the token away: the station can no longer send (its history stays)."""
    try:
        station_service.revoke_token(session, name=name)
    except station_service.StationNotFound as exc:
        return _stations_page(request, session, user, error=str(exc), status_code=404)
    log.info("%s revoked the token of station %s", user.username, name)
    audit.record(session, actor=actor_of(request, user), action="station.revoke",
                 target_type="station", target_id=name)
    return _stations_page(
        request, session, user,
        notice=f"The token of station {name} is revoked: it can no longer send taps, claims "
               "or heartbeats. Rotate its token to let it in again.",
    )
