"""Request dependencies shared by the routers: who is asking, the app's services, list
parameters and paging.

Station auth (Bearer token) is here; operator auth (session cookie, roles) comes from
``tracker.web.auth``. Station tokens are checked by SHA-256 lookup; a successful lookup is
reused for ``stations.TOKEN_CACHE_SECONDS`` (2 s) per process, so a token revoked or rotated
by another process (or in SQL) stops working within 2 s, and at once when rotated through
this app.
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, HTTPException, Path, Query, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator

from tracker.db import Database, SessionDep
from tracker.models import Page, PayoutState, StationPublic, TapOutcome, normalise_uid
from tracker.models.checks import (
    MAX_DB_INT,
    MAX_PAGE,
    MAX_SATS,
    MULTILINE_FIELDS,
    check_optional_moment,
    text_problem,
)
from tracker.services import audit
from tracker.services import stations as station_service
from tracker.services.filters import InvalidCursor, ListFilter
from tracker.services.sorting import Sort, UnknownSort, parse_sort
from tracker.services.taps import TapRecorder
from tracker.web.auth import CurrentUser, current_user, require_admin, require_viewer
from tracker.web.limits import STATION_STATE_KEY

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


def _checked_at_the_door(request: Request) -> StationPublic | None:
    """The station :class:`~tracker.web.limits.RequestGate` authenticated before the body."""
    found = getattr(request.state, STATION_STATE_KEY, None)
    return found if isinstance(found, StationPublic) else None


async def look_up_station(db: Database, token: str) -> StationPublic | None:
    """The station of ``token`` (from the cache when seen in the last seconds), or None."""
    station = station_service.cached_station(db, token)
    if station is not None:
        return station

    def look_up() -> StationPublic | None:
        with db.sessions() as session:
            return station_service.authenticate(session, token=token)

    return await db.call(look_up)


def require_station(request: Request, session: SessionDep) -> StationPublic:
    """The station whose Bearer token came with the request (401 otherwise)."""
    checked = _checked_at_the_door(request)
    if checked is not None:
        return checked
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
    checked = _checked_at_the_door(request)
    if checked is not None:
        return checked
    token = bearer(request)
    if token is None:
        raise _unauthorized("send the station token as 'Authorization: Bearer <token>'")
    station = await look_up_station(database(request), token)
    if station is None:
        raise _unauthorized("unknown station token; create one with `tracker stations add`")
    return station


def station_or_viewer(request: Request, session: SessionDep) -> StationPublic | CurrentUser:
    """A station (Bearer) or any signed-in operator."""
    if bearer(request) is not None:
        return require_station(request, session)
    user = current_user(request)
    if user is None:
        raise _unauthorized("send a station token or sign in at /login")
    return user


def actor_of(request: Request, user: CurrentUser) -> audit.Actor:
    """The audit log's actor for a signed-in operator or an API token, with the address."""
    return audit.Actor(
        name=user.username,
        kind="token" if user.via_token else "session",
        address=request.client.host if request.client else None,
    )


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

#: A path or body id: a positive signed 64-bit integer (a larger one cannot exist).
DbId = Annotated[int, Path(ge=1, le=MAX_DB_INT)]
#: A moment in a query (since/until): inside the range the tracker stores.
Moment = Annotated[datetime | None, AfterValidator(check_optional_moment)]
#: An offset page number (the cards list).
PageNumber = Annotated[int, Query(ge=1, le=MAX_PAGE)]


def _invalid(where: str, name: str, problem: str) -> RequestValidationError:
    return RequestValidationError(
        [{"loc": (where, name), "msg": problem, "type": "value_error", "input": None}]
    )


async def check_request_text(request: Request) -> None:
    """App-wide dependency: no control characters in the path, the query or a form field.

    Why: nothing the tracker stores or looks up may contain them (PostgreSQL refuses NUL),
    and catching them here keeps every route from answering 500 on a crafted URL. The JSON
    bodies are checked by their models (:class:`~tracker.models.checks.CheckedInput`).
    Raised as a validation error: 422 under /api, a 400 page for the pages."""
    problem = text_problem(request.url.path)
    if problem is not None:
        raise _invalid("path", "path", problem)
    for name, value in request.query_params.multi_items():
        problem = text_problem(name) or text_problem(value)
        if problem is not None:
            raise _invalid("query", name, problem)
    content_type = request.headers.get("content-type", "")
    if request.method == "POST" and (
        content_type.startswith("application/x-www-form-urlencoded")
        or content_type.startswith("multipart/form-data")
    ):
        form = await request.form()  # FastAPI has read (and cached) it already
        for name, field in form.multi_items():
            if isinstance(field, str):
                problem = text_problem(name) or text_problem(
                    field, multiline=name in MULTILINE_FIELDS
                )
                if problem is not None:
                    raise _invalid("body", name, problem)


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


def sort_or_422(kind: str, sort: str | None, direction: str | None) -> Sort:
    """``sort``/``dir`` checked against ``kind``'s allow-list; a 422 lists the allowed values."""
    try:
        return parse_sort(kind, sort, direction)
    except UnknownSort as exc:
        raise HTTPException(
            status_code=422,
            detail=[
                {
                    "field": exc.what,
                    "reason": str(exc),
                    "allowed": exc.allowed,
                    "type": "value_error",
                }
            ],
        ) from None


class ListParams:
    """Query parameters shared by the payout and tap lists and their exports."""

    def __init__(
        self,
        state: Annotated[PayoutState | None, Query(description="payout state")] = None,
        outcome: Annotated[TapOutcome | None, Query(description="tap outcome")] = None,
        card: Annotated[str | None, Query(description="card UID (hex)")] = None,
        station: Annotated[str | None, Query(description="station name")] = None,
        since: Annotated[Moment, Query(description="from (inclusive, ISO 8601)")] = None,
        until: Annotated[Moment, Query(description="to (exclusive, ISO 8601)")] = None,
        min_sats: Annotated[int | None, Query(ge=0, le=MAX_SATS)] = None,
        max_sats: Annotated[int | None, Query(ge=0, le=MAX_SATS)] = None,
        q: Annotated[str | None, Query(max_length=200, description="text search")] = None,
        sort: Annotated[
            str | None,
            Query(max_length=40, description="column to sort by (taps: time, counter, "
                  "outcome; payouts: time, id, amount, state)"),
        ] = None,
        direction: Annotated[
            Literal["asc", "desc"] | None, Query(alias="dir", description="sort direction")
        ] = None,
    ) -> None:
        self.sort, self.direction = sort, direction
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


    def for_list(self, kind: str) -> ListFilter:
        """The filter with the sort checked against ``kind``'s allow-list (422 naming it)."""
        order = sort_or_422(kind, self.sort, self.direction)
        return dataclasses.replace(self.filter, sort=None if order.is_default else order)


ListDep = Annotated[ListParams, Depends()]


def one_page(
    lister: Callable[..., tuple[list[T], str | None]],
    request: Request,
    session: Any,
    *,
    flt: Any,
    cursor: str | None,
    limit: int | None,
) -> Page[T]:
    """One page from a service's ``list_*`` function (``flt``: its filter, a ``ListFilter`` or
    the audit log's); a bad cursor is a 422 on ``cursor``."""
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
