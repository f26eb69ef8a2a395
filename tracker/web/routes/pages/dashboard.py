"""The dashboard: counters, recent payouts and taps, charts (and their live refresh)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from markupsafe import Markup

from tracker import charts
from tracker.db import SessionDep
from tracker.services import payouts as payout_service
from tracker.services import stats as stats_service
from tracker.services import taps as tap_service
from tracker.web.auth import Viewer
from tracker.web.routes.pages.errors import PageRoute
from tracker.web.templating import render

router = APIRouter(route_class=PageRoute, include_in_schema=False)
DASHBOARD_ROWS = 10

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
    days = [(d, sats) for d, _n, sats in volume]
    ranked = [(alias or uid, sats, f"/cards/{uid}") for uid, alias, sats in top]
    return {
        "volume": Markup(charts.responsive(lambda w: charts.payout_volume_per_day(days, width=w))),
        "stations": Markup(
            charts.responsive(lambda w: charts.taps_per_station(per_station, width=w))
        ),
        "cards": Markup(charts.responsive(lambda w: charts.top_cards(ranked, width=w))),
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
