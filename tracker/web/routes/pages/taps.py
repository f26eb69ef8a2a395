"""The taps list."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tracker.db import SessionDep
from tracker.models import TapOutcome
from tracker.services import taps as tap_service
from tracker.web.auth import Viewer
from tracker.web.routes.pages.errors import PageRoute
from tracker.web.routes.pages.listing import list_page, parse_filters
from tracker.web.templating import render

router = APIRouter(route_class=PageRoute, include_in_schema=False)


@router.get("/taps")
def taps_page(request: Request, session: SessionDep, user: Viewer) -> Response:
    filters = parse_filters(request, kind="taps")
    items, context = list_page(session, filters, "taps", tap_service.list_taps)
    return render(
        request,
        "taps.html",
        {
            "title": "Taps",
            "items": items,
            **context,
            "outcomes": [o.value for o in TapOutcome],
        },
        user=user,
        status_code=400 if filters.errors else 200,
    )
