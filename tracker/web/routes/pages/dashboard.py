"""The dashboard: counters, recent payouts and taps, charts (and their live refresh)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from markupsafe import Markup

from tracker import charts, labels, zones
from tracker.db import SessionDep
from tracker.services import payouts as payout_service
from tracker.services import stats as stats_service
from tracker.services import taps as tap_service
from tracker.web.auth import Viewer
from tracker.web.routes.pages.errors import PageRoute, wants_html
from tracker.web.templating import render
from tracker.web.zone import operator_zone

router = APIRouter(route_class=PageRoute, include_in_schema=False)
DASHBOARD_ROWS = 10

PERIODS = {
    "today": "Today",
    "7d": "7 days",
    "30d": "30 days",
    "all": "All time",
}


class UnknownPeriod(ValueError):
    """``?period=`` is not one of :data:`PERIODS`; the answer lists the allowed ones."""

    def __init__(self, period: str) -> None:
        super().__init__(
            f"unknown period {period[:20]!r}; use one of: {', '.join(PERIODS)}"
        )


def period_bounds(
    period: str, *, now: datetime | None = None, zone: tzinfo = UTC
) -> tuple[datetime | None, str]:
    """The start of ``period``; "today" starts at midnight in the operator's ``zone``."""
    now = now or datetime.now(UTC)
    if period not in PERIODS:
        raise UnknownPeriod(period)
    if period == "today":
        return zones.today_start(zone, now=now), period
    if period == "30d":
        return now - timedelta(days=30), period
    if period == "all":
        return None, period
    return now - timedelta(days=7), "7d"


def _bounds(request: Request, period: str) -> tuple[datetime | None, str, tzinfo]:
    zone = operator_zone(request)
    try:
        since, period = period_bounds(period, zone=zone)
    except UnknownPeriod as exc:
        if wants_html(request) and request.url.path == "/":
            raise HTTPException(400, str(exc)) from None
        raise HTTPException(
            422, {"reason": "unknown_period", "message": str(exc), "allowed": list(PERIODS)}
        ) from None
    return since, period, zone


def _dashboard_charts(session: Any, since: datetime | None) -> dict[str, Markup]:
    """The three dashboard charts as escaped SVG, for the page and for its live refresh."""
    volume = stats_service.payout_volume_per_day(session, since=since)
    per_station = stats_service.taps_per_station(session, since=since)
    top = stats_service.top_cards(session, since=since, limit=8)
    days = [(d, sats) for d, _n, sats in volume]
    ranked = [(labels.card_label(uid, alias) or uid, sats, f"/cards/{uid}")
              for uid, alias, sats in top]
    return {
        "volume": Markup(charts.responsive(lambda w: charts.payout_volume_per_day(days, width=w))),
        "stations": Markup(
            charts.responsive(lambda w: charts.taps_per_station(per_station, width=w))
        ),
        "cards": Markup(charts.responsive(lambda w: charts.top_cards(ranked, width=w))),
    }


@router.get("/")
def dashboard(request: Request, session: SessionDep, user: Viewer, period: str = "7d") -> Response:
    since, period, zone = _bounds(request, period)
    stats = stats_service.dashboard_stats(session, since=since, zone=zone)
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
        },
        user=user,
    )


@router.get("/charts.html")
def dashboard_charts(
    request: Request, session: SessionDep, user: Viewer, period: str = "7d"
) -> Response:
    """The chart panels alone, so the live dashboard redraws them when taps and payouts arrive."""
    since, period, _zone = _bounds(request, period)
    response = render(
        request,
        "dashboard_charts.html",
        {"charts": _dashboard_charts(session, since), "period": period},
        user=user,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/summary.json")
def summary(
    request: Request, session: SessionDep, user: Viewer, period: str = "7d"
) -> JSONResponse:
    """The dashboard's numbers, for the live page to refresh its counters."""
    since, _, zone = _bounds(request, period)
    stats = stats_service.dashboard_stats(session, since=since, zone=zone)
    return JSONResponse(stats.model_dump(mode="json"), headers={"Cache-Control": "no-store"})
