"""Request dependencies shared by the routers: who is asking, the app's services, list
parameters and paging.

Station auth (Bearer token) is here; operator auth (session cookie, roles) comes from
``tracker.web.auth``. Station tokens are checked by SHA-256 lookup; a successful lookup is
reused for ``stations.TOKEN_CACHE_SECONDS`` (2 s) per process, so a token revoked or rotated
by another process (or in SQL) stops working within 2 s, and at once when rotated through
this app.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Query, Request, status

from tracker.db import Database, SessionDep
from tracker.models import Page, PayoutState, StationPublic, TapOutcome, normalise_uid
from tracker.services import stations as station_service
from tracker.services.filters import InvalidCursor, ListFilter
from tracker.services.taps import TapRecorder
from tracker.web.auth import CurrentUser, current_user, require_admin, require_viewer

T = TypeVar("T")


# --- the app's services (built once in create_app) ---------------------------------------------


def database(request: Request) -> Database:
    return request.app.state.database  # type: ignore[no-any-return]


def tap_recorder(request: Request) -> TapRecorder:
    return request.app.state.tap_recorder  # type: ignore[no-any-return]


# --- who is asking -----------------------------------------------------------------------------


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    if token.strip().startswith("bcop_"):
        return None  # an operator's API token, handled by tracker.web.auth
    return token.strip()


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail={"reason": "unauthorized", "message": message},
        headers={"WWW-Authenticate": "Bearer"},
    )


def require_station(request: Request, session: SessionDep) -> StationPublic:
    """The station whose Bearer token came with the request (401 otherwise)."""
    token = bearer(request)
    if token is None:
        raise _unauthorized("send the station token as 'Authorization: Bearer <token>'")
    station = station_service.authenticate(session, token=token)
    if station is None:
        raise _unauthorized("unknown station token; create one with `tracker stations add`")
    return station


async def station_of(request: Request) -> StationPublic:
    """:func:`require_station` for the ingest routes: a token seen in the last seconds is
    answered from the cache without a session; others are looked up (401 when unknown)."""
    db = database(request)
    token = bearer(request)
    station = station_service.cached_station(db, token) if token else None
    if station is not None:
        return station

    def look_up() -> StationPublic:
        with db.sessions() as session:
            return require_station(request, session)

    return await db.call(look_up)


def station_or_viewer(request: Request, session: SessionDep) -> StationPublic | CurrentUser:
    """A station (Bearer) or any signed-in operator."""
    if bearer(request) is not None:
        return require_station(request, session)
    user = current_user(request)
    if user is None:
        raise _unauthorized("send a station token or sign in at /login")
    return user


def require_admin_write(request: Request) -> CurrentUser:
    """Admin + CSRF defence for cookie-authenticated JSON writes: the page must echo the
    session's CSRF token in ``X-CSRF-Token`` (a cross-site form cannot set headers)."""
    user = require_admin(request)
    if user.via_token:
        return user
    sent = request.headers.get("x-csrf-token", "")
    if not sent or not hmac.compare_digest(sent.encode(), user.csrf.encode()):
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail={"reason": "csrf", "message": "send the page's CSRF token in X-CSRF-Token"},
        )
    return user


StationDep = Annotated[StationPublic, Depends(require_station)]
ViewerDep = Annotated[CurrentUser, Depends(require_viewer)]
AdminWriteDep = Annotated[CurrentUser, Depends(require_admin_write)]


# --- parsing and paging ------------------------------------------------------------------------


def not_found(reason: str, message: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_404_NOT_FOUND, detail={"reason": reason, "message": message}
    )


def uid_or_422(uid: str) -> str:
    try:
        return normalise_uid(uid)
    except ValueError as exc:
        raise HTTPException(
            status_code=422, detail=[{"field": "uid", "reason": str(exc), "type": "value_error"}]
        ) from None


def page_limit(request: Request, limit: int | None) -> int:
    settings = request.app.state.settings
    if limit is None:
        return int(settings.page_size)
    return max(1, min(limit, int(settings.max_page_size)))


class ListParams:
    """Query parameters shared by the payout and tap lists and their exports."""

    def __init__(
        self,
        state: Annotated[PayoutState | None, Query(description="payout state")] = None,
        outcome: Annotated[TapOutcome | None, Query(description="tap outcome")] = None,
        card: Annotated[str | None, Query(description="card UID (hex)")] = None,
        station: Annotated[str | None, Query(description="station name")] = None,
        since: Annotated[datetime | None, Query(description="from (inclusive, ISO 8601)")] = None,
        until: Annotated[datetime | None, Query(description="to (exclusive, ISO 8601)")] = None,
        min_sats: Annotated[int | None, Query(ge=0)] = None,
        max_sats: Annotated[int | None, Query(ge=0)] = None,
        q: Annotated[str | None, Query(max_length=200, description="text search")] = None,
    ) -> None:
        card_uid = uid_or_422(card) if card else None
        self.filter = ListFilter(
            state=state,
            outcome=outcome,
            card=card_uid,
            station=station or None,
            since=since,
            until=until,
            min_sats=min_sats,
            max_sats=max_sats,
            q=q or None,
        )


ListDep = Annotated[ListParams, Depends()]


def one_page(
    lister: Callable[..., tuple[list[T], str | None]],
    request: Request,
    session: Any,
    *,
    flt: ListFilter,
    cursor: str | None,
    limit: int | None,
) -> Page[T]:
    """One page from a service's ``list_*`` function; a bad cursor is a 422 on ``cursor``."""
    try:
        items, nxt = lister(session, flt=flt, cursor=cursor, limit=page_limit(request, limit))
    except InvalidCursor:
        raise HTTPException(
            status_code=422,
            detail=[
                {
                    "field": "cursor",
                    "reason": "invalid cursor; omit it to start again",
                    "type": "value_error",
                }
            ],
        ) from None
    return Page(items=items, next_cursor=nxt)
