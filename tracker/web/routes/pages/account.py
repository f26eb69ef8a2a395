"""The signed-in operator's own settings: the time zone their pages are shown in."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from tracker import zones
from tracker.db import SessionDep, write_lock
from tracker.models import User
from tracker.web.auth import CSRFChecked, Viewer
from tracker.web.routes.pages.errors import PageRoute
from tracker.web.templating import render
from tracker.web.zone import server_zone

router = APIRouter(route_class=PageRoute, include_in_schema=False)


@router.get("/account")
def account_page(request: Request, user: Viewer) -> Response:
    return render(
        request,
        "account.html",
        {
            "title": "Your settings",
            "zones": zones.zone_names(),
            "chosen": user.timezone or "",
            "server_zone": server_zone(request).key,
        },
        user=user,
    )


@router.post("/account/timezone", dependencies=[CSRFChecked])
def set_timezone(
    session: SessionDep, user: Viewer, timezone: Annotated[str, Form(max_length=64)] = ""
) -> Response:
    """Empty: follow the server's zone again."""
    name = timezone.strip()
    if name:
        try:
            zones.parse_zone(name)
        except zones.UnknownZone as exc:
            raise HTTPException(400, str(exc)) from None
    with write_lock(session):
        row = session.get(User, user.id)
        if row is None:
            raise HTTPException(404, "your account no longer exists; sign in again")
        row.timezone = name or None
        session.add(row)
        session.commit()
    message = f"Times are now shown in {name or 'the server' + chr(39) + 's time zone'}."
    return RedirectResponse(f"/account?msg={quote(message)}", status_code=303)
