"""The taps list, and one tap with what it led to."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from tracker.db import SessionDep
from tracker.models import TapOutcome
from tracker.services import payouts as payout_service
from tracker.services import taps as tap_service
from tracker.web.auth import Viewer
from tracker.web.deps import DbId
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


@router.get("/taps/{tap_id}")
def tap_page(request: Request, tap_id: DbId, session: SessionDep, user: Viewer) -> Response:
    tap = tap_service.get_tap(session, tap_id=tap_id)
    if tap is None:
        raise HTTPException(status_code=404, detail=f"There is no tap #{tap_id}.")
    payouts = payout_service.payouts_of_tap(session, tap_id=tap_id)
    return render(request, "tap.html", {"title": f"Tap #{tap_id}", "t": tap,
                                        "payouts": payouts}, user=user)
