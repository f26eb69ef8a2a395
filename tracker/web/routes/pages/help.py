"""``/help``: the operator's guide, served by the tracker itself.

Why here and not a link to a website: the tracker runs in shops, often offline, and its pages
may reach nothing outside it (CSP ``default-src 'self'``). The empty lists link to sections of
this page (``/help#payouts``…), and its commands are the README's, with this tracker's URL.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tracker.services.sorting import allowed
from tracker.web.auth import Viewer
from tracker.web.routes.pages.errors import PageRoute
from tracker.web.templating import render

router = APIRouter(route_class=PageRoute, include_in_schema=False)


@router.get("/help")
def help_page(request: Request, user: Viewer) -> Response:
    sortable = {kind: allowed(kind) for kind in ("payouts", "taps", "cards", "stations")}
    return render(request, "help.html", {"title": "Help", "sortable": sortable}, user=user)
