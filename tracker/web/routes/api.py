"""JSON API under ``/api/v1``: station ingest, operator reads, admin edits, exports.

Routes only parse and render; every query lives in ``tracker.services``. Station auth (Bearer
token) is here; operator auth (session cookie, roles) comes from ``tracker.web.auth``.

Ingest answers (``POST /api/v1/taps``):

* 201 ``{"tap": …, "created": true}`` stored;
* 200 ``{"tap": …, "created": false}`` this station already stored that idempotency key;
* 409 ``{"detail": {"reason": "counter_not_increasing", "last_counter": n}}`` replay, lost race,
  or the key belongs to another station;
* 403 ``{"detail": {"reason": "card_blocked"}}`` accepted tap on a blocked card;
* 401 bad or missing token; 422 invalid body (field reasons).

Station tokens are checked by SHA-256 lookup; a successful lookup is reused for
``stations.TOKEN_CACHE_SECONDS`` (2 s) per process, so a token revoked or rotated by another
process (or in SQL) stops working within 2 s, and at once when rotated in this process.
The ingest itself runs in ``tracker.services.ingest`` (a short path for the common case).
"""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlmodel import SQLModel

from tracker.db import SessionDep, close_async_pools
from tracker.models import (
    CardDetail,
    CardPublic,
    CardStatus,
    CardStatusPublic,
    CardUpdate,
    Page,
    PayoutCreate,
    PayoutDetail,
    PayoutPublic,
    PayoutState,
    PayoutUpdate,
    StationPublic,
    Stats,
    TapCreate,
    TapOutcome,
    TapPublic,
    normalise_uid,
)
from tracker.services import cards as card_service
from tracker.services import export as export_service
from tracker.services import ingest as ingest_service
from tracker.services import payouts as payout_service
from tracker.services import stations as station_service
from tracker.services import stats as stats_service
from tracker.services import taps as tap_service
from tracker.services.filters import InvalidCursor, ListFilter
from tracker.web.auth import CurrentUser, current_user, require_admin, require_viewer

router = APIRouter(prefix="/api/v1", tags=["api"])
T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# Authentication


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail={"reason": "unauthorized", "message": message},
        headers={"WWW-Authenticate": "Bearer"},
    )


def require_station(request: Request, session: SessionDep) -> StationPublic:
    """The station whose Bearer token came with the request (401 otherwise)."""
    token = _bearer(request)
    if token is None:
        raise _unauthorized("send the station token as 'Authorization: Bearer <token>'")
    station = station_service.authenticate(session, token=token)
    if station is None:
        raise _unauthorized("unknown station token; create one with `tracker stations add`")
    return station


def station_or_viewer(request: Request, session: SessionDep) -> StationPublic | CurrentUser:
    """A station (Bearer) or any signed-in operator."""
    if _bearer(request) is not None:
        return require_station(request, session)
    user = current_user(request)
    if user is None:
        raise _unauthorized("send a station token or sign in at /login")
    return user


def require_admin_write(request: Request) -> CurrentUser:
    """Admin + CSRF defence for cookie-authenticated JSON writes: the page must echo the
    session's CSRF token in ``X-CSRF-Token`` (a cross-site form cannot set headers)."""
    user = require_admin(request)
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


# ---------------------------------------------------------------------------------------------
# Ingest


class TapAnswer(SQLModel):
    tap: TapPublic
    created: bool


class PayoutAnswer(SQLModel):
    payout: PayoutPublic
    created: bool


_CONFLICT_DOC = {"description": "counter_not_increasing (replay, lost race or foreign key)"}


@router.post(
    "/taps",
    response_model=TapAnswer,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": TapAnswer, "description": "already stored by this station (a retry)"},
        401: {"description": "missing or unknown station token"},
        403: {"description": "card_blocked"},
        409: _CONFLICT_DOC,
    },
    summary="Report a tap (stations)",
)
async def post_tap(body: TapCreate, request: Request) -> Response:
    """Store a tap reported by a station. Idempotent per station on ``idempotency_key``
    (``"<UID>:<counter>"`` for accepted taps, ``"<station>:<uuid4>"`` for refused ones)."""
    engine = request.app.state.engine
    if engine.dialect.name == "sqlite":
        # SQLite writes are serialised anyway and take well under a millisecond; doing them
        # on the event loop avoids a worker-thread hop and GIL hand-offs per tap (measured:
        # about twice the ingest rate).
        return _ingest_tap(body, request)
    # PostgreSQL waits on the network: the common case is awaited on an async connection
    # (ingest_tap_async); a token not seen lately is looked up in a worker thread.
    state = request.app.state
    token = _bearer(request)
    station = station_service.cached_station(engine, token) if token else None
    if station is None:
        station = await run_in_threadpool(_station_of, request)
    with _tap_errors():
        tap, created = await ingest_service.ingest_tap_async(
            engine,
            state.sessionmaker,
            station_id=station.id,
            station_name=station.name,
            tap=body,
        )
    return _tap_answer(tap, created)


def _station_of(request: Request) -> StationPublic:
    with request.app.state.sessionmaker() as session:
        return require_station(request, session)


@contextlib.contextmanager
def _tap_errors() -> Iterator[None]:
    """The ingest service's refusals as HTTP answers (409, 403)."""
    try:
        yield
    except tap_service.CounterConflict as exc:
        raise HTTPException(
            status_code=status.HTTP_409_CONFLICT,
            detail={"reason": "counter_not_increasing", "last_counter": exc.last_counter},
        ) from None
    except tap_service.CardBlocked:
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN, detail={"reason": "card_blocked"}
        ) from None


def _tap_answer(tap: TapPublic, created: bool) -> Response:
    answer = TapAnswer(tap=tap, created=created)
    return Response(
        content=answer.model_dump_json(),
        media_type="application/json",
        status_code=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
    )


def _ingest_tap(body: TapCreate, request: Request) -> Response:
    state = request.app.state
    token = _bearer(request)
    station = station_service.cached_station(state.engine, token) if token else None
    if station is None:  # not a recently seen token: look it up (or refuse it)
        station = _station_of(request)
    with _tap_errors():
        tap, created = ingest_service.ingest_tap(
            state.engine,
            state.sessionmaker,
            station_id=station.id,
            station_name=station.name,
            tap=body,
        )
    return _tap_answer(tap, created)


async def _close_async_pools() -> None:
    close_async_pools()  # this loop's async ingest connections (app shutdown)


router.add_event_handler("shutdown", _close_async_pools)


@router.get(
    "/cards/{uid}/status",
    response_model=CardStatusPublic,
    summary="Card status for a station (or an operator)",
)
def get_card_status(
    uid: str,
    session: SessionDep,
    _who: Annotated[Any, Depends(station_or_viewer)],
) -> CardStatusPublic:
    """``status`` is active, blocked, wiped, or unknown (never seen)."""
    return card_service.card_status(session, uid=_uid_or_422(uid))


@router.post(
    "/payouts",
    response_model=PayoutAnswer,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": PayoutAnswer, "description": "retry of a stored payout"}},
    summary="Report a claim / payout (stations)",
)
def post_payout(
    body: PayoutCreate, response: Response, station: StationDep, session: SessionDep
) -> PayoutAnswer:
    """Link a claim to its tap (``tap_idempotency_key`` or ``tap_id``) with what the issuer
    answered. ``state`` defaults to ``Unknown``."""
    try:
        payout, created = payout_service.create_payout(session, payout=body, station_id=station.id)
    except payout_service.TapNotFound as exc:
        raise HTTPException(
            status_code=status.HTTP_404_NOT_FOUND,
            detail={"reason": "tap_not_found", "message": str(exc)},
        ) from None
    except payout_service.PayoutConflict as exc:
        raise HTTPException(
            status_code=status.HTTP_409_CONFLICT,
            detail={"reason": "idempotency_key_conflict", "message": str(exc)},
        ) from None
    if not created:
        response.status_code = status.HTTP_200_OK
    return PayoutAnswer(payout=payout, created=created)


@router.patch(
    "/payouts/{payout_id}",
    response_model=PayoutPublic,
    summary="Change a payout's state or issuer details (its station, or an admin)",
)
def patch_payout(
    payout_id: int, body: PayoutUpdate, request: Request, session: SessionDep
) -> PayoutPublic:
    """A state change adds a row to the payout's history (``source`` says who)."""
    station_id: int | None = None
    if _bearer(request) is not None:
        station_id = require_station(request, session).id
        if "source" not in body.model_fields_set:
            body.source = "station"
    else:
        require_admin_write(request)
        if "source" not in body.model_fields_set:
            body.source = "operator"
    try:
        return payout_service.update_payout(
            session, payout_id=payout_id, update=body, station_id=station_id
        )
    except payout_service.PayoutNotFound:
        raise _not_found("payout_not_found", f"no payout {payout_id}") from None


# ---------------------------------------------------------------------------------------------
# Operator reads


def _not_found(reason: str, message: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_404_NOT_FOUND, detail={"reason": reason, "message": message}
    )


def _uid_or_422(uid: str) -> str:
    try:
        return normalise_uid(uid)
    except ValueError as exc:
        raise HTTPException(
            status_code=422, detail=[{"field": "uid", "reason": str(exc), "type": "value_error"}]
        ) from None


def _limit(request: Request, limit: int | None) -> int:
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
        card_uid = _uid_or_422(card) if card else None
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


def _page(
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
        items, nxt = lister(session, flt=flt, cursor=cursor, limit=_limit(request, limit))
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


def _add_export_routes(kind: str) -> None:
    """``GET /<kind>/export.csv`` and ``.json``: every row the list filters select, streamed.
    (Registered in place: ``/payouts/export.csv`` must come before ``/payouts/{payout_id}``.)"""
    for fmt in ("csv", "json"):
        router.add_api_route(
            f"/{kind}/export.{fmt}",
            _export_endpoint(kind, fmt),
            methods=["GET"],
            name=f"export_{kind}_{fmt}",
            summary=f"Export filtered {kind} as {fmt.upper()} (streamed)",
        )


def _export_endpoint(kind: str, fmt: str) -> Callable[..., StreamingResponse]:
    def export(request: Request, _user: ViewerDep, params: ListDep) -> StreamingResponse:
        return _export(request, kind, fmt, params.filter)

    return export


_EXPORTS = {
    ("taps", "csv"): export_service.taps_csv,
    ("taps", "json"): export_service.taps_json,
    ("payouts", "csv"): export_service.payouts_csv,
    ("payouts", "json"): export_service.payouts_json,
}
_MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


def _export(request: Request, kind: str, fmt: str, flt: ListFilter) -> StreamingResponse:
    """Stream every row matching ``flt`` as a download named ``<kind>.<fmt>``."""
    body = _EXPORTS[kind, fmt](request.app.state.engine, flt=flt)
    return StreamingResponse(
        body,
        media_type=_MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{kind}.{fmt}"'},
    )


@router.get("/stats", response_model=Stats, summary="Dashboard summary")
def get_stats(
    session: SessionDep,
    _user: ViewerDep,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Stats:
    """Payouts by state and amount for the period; active cards; taps today / in period."""
    return stats_service.dashboard_stats(session, since=since, until=until)


@router.get("/cards", response_model=card_service.CardsPage, summary="Cards, with search")
def get_cards(
    request: Request,
    session: SessionDep,
    _user: ViewerDep,
    q: Annotated[str | None, Query(max_length=200)] = None,
    status_: Annotated[CardStatus | None, Query(alias="status")] = None,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int | None, Query(ge=1)] = None,
) -> card_service.CardsPage:
    return card_service.list_cards(
        session, q=q, status=status_, page=page, page_size=_limit(request, page_size)
    )


@router.get("/cards/{uid}", response_model=CardDetail, summary="One card with totals")
def get_card(uid: str, session: SessionDep, _user: ViewerDep) -> CardDetail:
    try:
        return card_service.card_detail(session, uid=_uid_or_422(uid))
    except card_service.CardNotFound as exc:
        raise _not_found("card_not_found", str(exc)) from None


@router.patch("/cards/{uid}", response_model=CardPublic, summary="Rename, note, block/unblock")
def patch_card(
    uid: str, body: CardUpdate, session: SessionDep, _admin: AdminWriteDep
) -> CardPublic:
    try:
        return card_service.update_card(session, uid=_uid_or_422(uid), update=body)
    except card_service.CardNotFound as exc:
        raise _not_found("card_not_found", str(exc)) from None


@router.get("/cards/{uid}/taps", response_model=Page[TapPublic], summary="A card's taps")
def get_card_taps(
    uid: str,
    request: Request,
    session: SessionDep,
    _user: ViewerDep,
    cursor: str | None = None,
    limit: Annotated[int | None, Query(ge=1)] = None,
) -> Page[TapPublic]:
    flt = ListFilter(card=_uid_or_422(uid))
    return _page(tap_service.list_taps, request, session, flt=flt, cursor=cursor, limit=limit)


@router.get("/cards/{uid}/payouts", response_model=Page[PayoutPublic], summary="A card's payouts")
def get_card_payouts(
    uid: str,
    request: Request,
    session: SessionDep,
    _user: ViewerDep,
    cursor: str | None = None,
    limit: Annotated[int | None, Query(ge=1)] = None,
) -> Page[PayoutPublic]:
    flt = ListFilter(card=_uid_or_422(uid))
    return _page(payout_service.list_payouts, request, session, flt=flt, cursor=cursor, limit=limit)


@router.get("/payouts", response_model=Page[PayoutPublic], summary="Payouts, filtered")
def get_payouts(
    request: Request,
    session: SessionDep,
    _user: ViewerDep,
    params: ListDep,
    cursor: str | None = None,
    limit: Annotated[int | None, Query(ge=1)] = None,
) -> Page[PayoutPublic]:
    """Newest first. Filters: state, card, station, since/until, min_sats/max_sats, q."""
    return _page(
        payout_service.list_payouts, request, session, flt=params.filter, cursor=cursor, limit=limit
    )


_add_export_routes("payouts")


@router.get("/payouts/{payout_id}", response_model=PayoutDetail, summary="One payout in full")
def get_payout(payout_id: int, session: SessionDep, _user: ViewerDep) -> PayoutDetail:
    try:
        return payout_service.payout_detail(session, payout_id=payout_id)
    except payout_service.PayoutNotFound:
        raise _not_found("payout_not_found", f"no payout {payout_id}") from None


@router.get("/taps", response_model=Page[TapPublic], summary="Taps, filtered")
def get_taps(
    request: Request,
    session: SessionDep,
    _user: ViewerDep,
    params: ListDep,
    cursor: str | None = None,
    limit: Annotated[int | None, Query(ge=1)] = None,
) -> Page[TapPublic]:
    """Newest first. Filters: outcome, card, station, since/until, q."""
    return _page(
        tap_service.list_taps, request, session, flt=params.filter, cursor=cursor, limit=limit
    )


_add_export_routes("taps")


@router.get("/stations", response_model=list[StationPublic], summary="Stations")
def get_stations(session: SessionDep, _user: ViewerDep) -> list[StationPublic]:
    return station_service.list_stations(session)
