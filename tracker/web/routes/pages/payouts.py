"""The payouts list and one payout's page."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from tracker.db import SessionDep
from tracker.models import PayoutState
from tracker.services import payouts as payout_service
from tracker.web.auth import Viewer
from tracker.web.deps import DbId
from tracker.web.routes.pages.errors import PageRoute
from tracker.web.routes.pages.listing import list_page, parse_filters
from tracker.web.templating import render

router = APIRouter(route_class=PageRoute, include_in_schema=False)


@router.get("/payouts")
def payouts_page(request: Request, session: SessionDep, user: Viewer) -> Response:
    filters = parse_filters(request, kind="payouts")
    items, context = list_page(session, filters, "payouts", payout_service.list_payouts)
    return render(
        request,
        "payouts.html",
        {
            "title": "Payouts",
            "items": items,
            **context,
            "states": [s.value for s in PayoutState],
        },
        user=user,
        status_code=400 if filters.errors else 200,
    )


@router.get("/payouts/{payout_id}")
def payout_page(request: Request, payout_id: DbId, session: SessionDep, user: Viewer) -> Response:
    try:
        detail = payout_service.payout_detail(session, payout_id=payout_id)
    except payout_service.PayoutNotFound:
        raise HTTPException(status_code=404, detail=f"There is no payout #{payout_id}.") from None
    return render(request, "payout.html", {"title": f"Payout #{payout_id}", "p": detail}, user=user)
