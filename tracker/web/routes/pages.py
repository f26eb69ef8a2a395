"""The operator pages: dashboard, payouts, taps, cards, stations, live events, error pages.

Routes only parse the query, call one service function and render a template; the services own
every query. Filters are parsed leniently: a bad value becomes a message on the page instead
of a bare 422, because the person who typed it is looking at that page.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from markupsafe import Markup
from starlette.exceptions import HTTPException as StarletteHTTPException

from tracker import charts, events
from tracker.db import SessionDep
from tracker.models import CardStatus, CardUpdate, PayoutState, TapOutcome, normalise_uid
from tracker.services import cards as card_service
from tracker.services import payouts as payout_service
from tracker.services import stations as station_service
from tracker.services import stats as stats_service
from tracker.services import taps as tap_service
from tracker.services.filters import InvalidCursor, ListFilter
from tracker.web import auth
from tracker.web.auth import Admin, CSRFChecked, CurrentUser, Viewer
from tracker.web.templating import render

log = logging.getLogger(__name__)

#: Seconds between SSE comment lines; keeps proxies from closing an idle stream.
HEARTBEAT_SECONDS = 15.0
PAGE_SIZE = 50
DASHBOARD_ROWS = 10


# --- error pages -------------------------------------------------------------------------------

_HEADINGS = {
    400: "That request did not make sense",
    401: "Please sign in",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    429: "Too many attempts",
}


def _wants_html(request: Request) -> bool:
    if request.url.path.startswith("/api/") or request.url.path == "/events":
        return False
    accept = request.headers.get("accept", "")
    return "text/html" in accept or request.method == "POST"


def error_page(request: Request, status_code: int, message: str) -> Response:
    log.info("%s %s answered %s: %s", request.method, request.url.path, status_code, message)
    user = auth.current_user(request) if status_code != 500 else None
    return render(
        request,
        "error.html",
        {
            "title": _HEADINGS.get(status_code, "Error"),
            "heading": _HEADINGS.get(status_code, "Something went wrong"),
            "message": message,
            "reference": "",
        },
        status_code=status_code,
        user=user,
    )


def server_error_page(request: Request, exc: BaseException) -> Response:
    """Log the detail with a reference the operator can quote; show only the reference."""
    reference = secrets.token_hex(4)
    log.error(
        "unhandled error on %s %s (ref %s)",
        request.method,
        request.url.path,
        reference,
        exc_info=exc,
    )
    return render(
        request,
        "error.html",
        {
            "title": "Error",
            "heading": "Something went wrong on our side",
            "message": "The error was logged. Try again; if it keeps happening, tell an admin.",
            "reference": reference,
        },
        status_code=500,
    )


class PageRoute(APIRoute):
    """Routes of this router answer errors with a readable page instead of JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except StarletteHTTPException as exc:
                if exc.status_code < 400 or not _wants_html(request):
                    raise
                if exc.status_code >= 500:
                    log.error("HTTP %s on %s: %s", exc.status_code, request.url.path, exc.detail)
                return error_page(request, exc.status_code, str(exc.detail))
            except RequestValidationError as exc:
                if not _wants_html(request):
                    raise
                log.info("bad request to %s: %s", request.url.path, exc.errors())
                return error_page(request, 400, "Some of the values sent were not valid.")
            except Exception as exc:
                if not _wants_html(request):
                    raise
                return server_error_page(request, exc)

        return handler


def install_error_pages(app: Any) -> None:
    """Friendly 404/403/500 pages for browsers on every URL (``create_app`` calls this).

    JSON callers (``/api/...``, anything not asking for HTML) keep FastAPI's JSON errors.
    """
    from fastapi.exception_handlers import http_exception_handler

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code >= 400 and _wants_html(request):
            message = (
                "There is no page at this address." if exc.status_code == 404 else str(exc.detail)
            )
            return error_page(request, exc.status_code, message)
        return await http_exception_handler(request, exc)

    async def on_error(request: Request, exc: Exception) -> Response:
        if _wants_html(request):
            return server_error_page(request, exc)
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal error; see the tracker log"}, status_code=500)

    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_error)


router = APIRouter(route_class=PageRoute, include_in_schema=False)
router.include_router(auth.router)


# --- query parsing -----------------------------------------------------------------------------


@dataclass
class Filters:
    """A parsed filter form: the service filter, the raw values to refill the form, problems."""

    flt: ListFilter
    params: dict[str, str]
    errors: list[str]
    cursor: str | None


_FILTER_KEYS = (
    "state",
    "outcome",
    "card",
    "station",
    "since",
    "until",
    "min_sats",
    "max_sats",
    "q",
)


def _parse_moment(text: str, *, end_of_day: bool) -> datetime:
    """``YYYY-MM-DD`` (a whole UTC day; ``until`` includes that day) or an ISO 8601 moment."""
    if len(text) == 10:
        day = date.fromisoformat(text)
        moment = datetime.combine(day, time.min, tzinfo=UTC)
        return moment + timedelta(days=1) if end_of_day else moment
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_filters(request: Request, *, kind: str) -> Filters:
    raw = {k: request.query_params.get(k, "").strip() for k in _FILTER_KEYS}
    errors: list[str] = []
    values: dict[str, Any] = {}
    if raw["state"] and kind == "payouts":
        try:
            values["state"] = PayoutState(raw["state"])
        except ValueError:
            errors.append(f"Unknown state {raw['state']!r}.")
    if raw["outcome"] and kind == "taps":
        try:
            values["outcome"] = TapOutcome(raw["outcome"])
        except ValueError:
            errors.append(f"Unknown outcome {raw['outcome']!r}.")
    if raw["card"]:
        try:
            values["card"] = normalise_uid(raw["card"])
        except ValueError:
            errors.append("Card must be a UID in hex, e.g. 04A1B2C3D4E5F6.")
    if raw["station"]:
        values["station"] = raw["station"]
    for key, end in (("since", False), ("until", True)):
        if raw[key]:
            try:
                values[key] = _parse_moment(raw[key], end_of_day=end)
            except ValueError:
                errors.append(f"{key.capitalize()} must be a date like 2026-11-26.")
    if kind == "payouts":
        for key in ("min_sats", "max_sats"):
            if raw[key]:
                try:
                    number = int(raw[key])
                    if number < 0:
                        raise ValueError
                    values[key] = number
                except ValueError:
                    errors.append("Amounts must be whole, non-negative numbers of sats.")
    if raw["q"]:
        values["q"] = raw["q"][:200]
    params = {k: v for k, v in raw.items() if v}
    cursor = request.query_params.get("cursor") or None
    return Filters(ListFilter(**values), params, errors, cursor)


def export_params(flt: ListFilter, *, kind: str) -> dict[str, str]:
    """The API's query parameters for ``flt``: moments as ISO 8601, ``until`` exclusive.

    Built from the parsed filter, not the form, so "To 2026-11-26" (the whole day, as the page
    shows it) reaches the export as ``until=2026-11-27T00:00:00+00:00``.
    """
    params: dict[str, str] = {}
    if kind == "payouts" and flt.state is not None:
        params["state"] = flt.state.value
    if kind == "taps" and flt.outcome is not None:
        params["outcome"] = flt.outcome.value
    if flt.card:
        params["card"] = flt.card
    if flt.station:
        params["station"] = flt.station
    if flt.since is not None:
        params["since"] = flt.since.isoformat()
    if flt.until is not None:
        params["until"] = flt.until.isoformat()
    if kind == "payouts" and flt.min_sats is not None:
        params["min_sats"] = str(flt.min_sats)
    if kind == "payouts" and flt.max_sats is not None:
        params["max_sats"] = str(flt.max_sats)
    if flt.q:
        params["q"] = flt.q
    return params


def _export_links(kind: str, flt: ListFilter) -> dict[str, str]:
    """Links to E's export endpoints carrying exactly the filters shown on the page."""
    query = urlencode(export_params(flt, kind=kind))
    suffix = f"?{query}" if query else ""
    return {
        "csv": f"/api/v1/{kind}/export.csv{suffix}",
        "json": f"/api/v1/{kind}/export.json{suffix}",
    }


# --- dashboard ---------------------------------------------------------------------------------

PERIODS = {
    "today": "Today",
    "7d": "7 days",
    "30d": "30 days",
    "all": "All time",
}


def period_bounds(period: str, *, now: datetime | None = None) -> tuple[datetime | None, str]:
    now = now or datetime.now(UTC)
    if period == "today":
        return datetime.combine(now.date(), time.min, tzinfo=UTC), period
    if period == "30d":
        return now - timedelta(days=30), period
    if period == "all":
        return None, period
    return now - timedelta(days=7), "7d"


def _dashboard_charts(session: Any, since: datetime | None) -> dict[str, Markup]:
    """The three dashboard charts as escaped SVG, for the page and for its live refresh."""
    volume = stats_service.payout_volume_per_day(session, since=since)
    per_station = stats_service.taps_per_station(session, since=since)
    top = stats_service.top_cards(session, since=since, limit=8)
    return {
        "volume": Markup(charts.payout_volume_per_day([(d, sats) for d, _n, sats in volume])),
        "stations": Markup(charts.taps_per_station(per_station)),
        "cards": Markup(
            charts.top_cards([(alias or uid, sats, f"/cards/{uid}") for uid, alias, sats in top])
        ),
    }


@router.get("/")
def dashboard(request: Request, session: SessionDep, user: Viewer, period: str = "7d") -> Response:
    since, period = period_bounds(period)
    stats = stats_service.dashboard_stats(session, since=since)
    payouts, _ = payout_service.list_payouts(session, limit=DASHBOARD_ROWS)
    taps, _ = tap_service.list_taps(session, limit=DASHBOARD_ROWS)
    return render(
        request,
        "dashboard.html",
        {
            "title": "Dashboard",
            "stats": stats,
            "period": period,
            "periods": PERIODS,
            "payouts": payouts,
            "taps": taps,
            "charts": _dashboard_charts(session, since),
            "aliases": _aliases(session, [t.card_uid for t in taps]),
        },
        user=user,
    )


@router.get("/charts.html")
def dashboard_charts(
    request: Request, session: SessionDep, user: Viewer, period: str = "7d"
) -> Response:
    """The chart panels alone, so the live dashboard redraws them when taps and payouts arrive."""
    since, period = period_bounds(period)
    response = render(
        request,
        "dashboard_charts.html",
        {"charts": _dashboard_charts(session, since), "period": period},
        user=user,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/summary.json")
def summary(session: SessionDep, user: Viewer, period: str = "7d") -> JSONResponse:
    """The dashboard's numbers, for the live page to refresh its counters."""
    since, _ = period_bounds(period)
    stats = stats_service.dashboard_stats(session, since=since)
    return JSONResponse(stats.model_dump(mode="json"), headers={"Cache-Control": "no-store"})


def _aliases(session: Any, uids: list[str]) -> dict[str, str]:
    """Card aliases for the UIDs on a page of taps (taps do not carry the alias)."""
    found: dict[str, str] = {}
    for uid in set(uids):
        try:
            card = card_service.get_card(session, uid=uid)
        except (card_service.CardNotFound, ValueError):
            continue
        if card.alias:
            found[uid] = card.alias
    return found


def _list_page(
    session: Any, filters: Filters, kind: str, lister: Callable[..., tuple[list[Any], str | None]]
) -> tuple[list[Any], dict[str, Any]]:
    """One filtered page for the taps or payouts page, and the template values both share
    (filters, errors, paging, station choices, export links). A broken cursor is shown as an
    error on the page, not raised."""
    items: list[Any] = []
    next_cursor = None
    if not filters.errors:
        try:
            items, next_cursor = lister(
                session, flt=filters.flt, cursor=filters.cursor, limit=PAGE_SIZE
            )
        except InvalidCursor as exc:
            filters.errors.append(str(exc))
    return items, {
        "filters": filters.params,
        "errors": filters.errors,
        "next_cursor": next_cursor,
        "first_page": filters.cursor is None,
        "stations": station_service.station_names(session),
        "export": _export_links(kind, filters.flt),
    }


# --- payouts -----------------------------------------------------------------------------------


@router.get("/payouts")
def payouts_page(request: Request, session: SessionDep, user: Viewer) -> Response:
    filters = parse_filters(request, kind="payouts")
    items, context = _list_page(session, filters, "payouts", payout_service.list_payouts)
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
def payout_page(request: Request, payout_id: int, session: SessionDep, user: Viewer) -> Response:
    try:
        detail = payout_service.payout_detail(session, payout_id=payout_id)
    except payout_service.PayoutNotFound:
        raise HTTPException(status_code=404, detail=f"There is no payout #{payout_id}.") from None
    return render(request, "payout.html", {"title": f"Payout #{payout_id}", "p": detail}, user=user)


# --- taps --------------------------------------------------------------------------------------


@router.get("/taps")
def taps_page(request: Request, session: SessionDep, user: Viewer) -> Response:
    filters = parse_filters(request, kind="taps")
    items, context = _list_page(session, filters, "taps", tap_service.list_taps)
    return render(
        request,
        "taps.html",
        {
            "title": "Taps",
            "items": items,
            "aliases": _aliases(session, [t.card_uid for t in items]),
            **context,
            "outcomes": [o.value for o in TapOutcome],
        },
        user=user,
        status_code=400 if filters.errors else 200,
    )


# --- cards -------------------------------------------------------------------------------------


@router.get("/cards")
def cards_page(
    request: Request,
    session: SessionDep,
    user: Viewer,
    q: str = "",
    card_status: Annotated[str, Query(alias="status")] = "",
    page: int = 1,
) -> Response:
    status_filter = None
    if card_status:
        try:
            status_filter = CardStatus(card_status)
        except ValueError:
            raise HTTPException(
                status_code=400, detail=f"Unknown card status {card_status!r}."
            ) from None
    result = card_service.list_cards(
        session,
        q=q.strip()[:200] or None,
        status=status_filter,
        page=max(page, 1),
        page_size=PAGE_SIZE,
    )
    pages = max(1, -(-result.total // result.page_size))
    return render(
        request,
        "cards.html",
        {
            "title": "Cards",
            "result": result,
            "q": q,
            "status": card_status,
            "statuses": [s.value for s in CardStatus],
            "pages": pages,
        },
        user=user,
    )


def _card_uid(uid: str) -> str:
    try:
        return normalise_uid(uid)
    except ValueError:
        raise HTTPException(status_code=404, detail="That is not a card UID.") from None


@router.get("/cards/{uid}")
def card_page(request: Request, uid: str, session: SessionDep, user: Viewer) -> Response:
    uid = _card_uid(uid)
    try:
        detail = card_service.card_detail(session, uid=uid)
    except card_service.CardNotFound:
        raise HTTPException(status_code=404, detail=f"No card {uid} has been seen.") from None
    tap_cursor = request.query_params.get("taps_cursor") or None
    payout_cursor = request.query_params.get("payouts_cursor") or None
    try:
        taps, taps_next = tap_service.list_taps(
            session, flt=ListFilter(card=uid), cursor=tap_cursor, limit=100
        )
        payouts, payouts_next = payout_service.list_payouts(
            session, flt=ListFilter(card=uid), cursor=payout_cursor, limit=100
        )
    except InvalidCursor:
        raise HTTPException(status_code=400, detail="That page link is broken.") from None
    # A tap whose counter comes right after a gap is flagged: the card was used elsewhere.
    gap_before = {high + 1: (low, high) for low, high in detail.counter_gaps}
    return render(
        request,
        "card.html",
        {
            "title": detail.alias or uid,
            "card": detail,
            "taps": taps,
            "taps_next": taps_next,
            "payouts": payouts,
            "payouts_next": payouts_next,
            "gap_before": gap_before,
            "first_page": tap_cursor is None and payout_cursor is None,
        },
        user=user,
    )


def _update_card(session: Any, uid: str, update: CardUpdate, message: str) -> Response:
    try:
        card_service.update_card(session, uid=uid, update=update)
    except card_service.CardNotFound:
        raise HTTPException(status_code=404, detail=f"No card {uid} has been seen.") from None
    return RedirectResponse(
        f"/cards/{uid}?msg={quote(message)}", status_code=status.HTTP_303_SEE_OTHER
    )


@router.post("/cards/{uid}/alias", dependencies=[CSRFChecked])
def rename_card(
    uid: str,
    session: SessionDep,
    user: Admin,
    alias: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    uid = _card_uid(uid)
    log.info("%s renamed card %s", user.username, uid)
    return _update_card(session, uid, CardUpdate(alias=alias), "Alias saved.")


@router.post("/cards/{uid}/notes", dependencies=[CSRFChecked])
def card_notes(
    uid: str,
    session: SessionDep,
    user: Admin,
    notes: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    uid = _card_uid(uid)
    return _update_card(session, uid, CardUpdate(notes=notes), "Notes saved.")


@router.post("/cards/{uid}/status", dependencies=[CSRFChecked])
def set_card_status(
    uid: str,
    session: SessionDep,
    user: Admin,
    status_value: Annotated[str, Form(alias="status")],
) -> Response:
    uid = _card_uid(uid)
    if status_value not in (CardStatus.active.value, CardStatus.blocked.value):
        raise HTTPException(status_code=400, detail="A card can only be blocked or unblocked.")
    log.info("%s set card %s to %s", user.username, uid, status_value)
    message = "Card blocked." if status_value == CardStatus.blocked.value else "Card unblocked."
    return _update_card(session, uid, CardUpdate(status=CardStatus(status_value)), message)


# --- stations ----------------------------------------------------------------------------------


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
    return render(
        request,
        "stations.html",
        {
            "title": "Stations",
            "stations": station_service.list_stations(session),
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
    return _stations_page(request, session, user, new_token=token, new_station=station.name)


# --- live events -------------------------------------------------------------------------------


@router.get("/events")
async def event_stream(request: Request, user: Viewer) -> StreamingResponse:
    """Server-sent events: ``event: tap|payout|card`` with a JSON row; comments as heartbeat."""
    hub = events.live_updates(request.app).ensure_started()
    queue = hub.attach()  # before the headers go out: nothing after "open" is missed
    await hub.ready()  # PostgreSQL: the watcher LISTENs only while someone subscribes

    async def stream() -> AsyncIterator[str]:
        try:
            yield "retry: 2000\n: connected\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=HEARTBEAT_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if event is None:
                    return
                yield event.sse()
        finally:
            hub.detach(queue)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
