"""``GET /metrics``: Prometheus text format, for admins or a scrape token.

What is exported:

* ``tracker_taps_total{outcome}``, ``tracker_claims{state}``, ``tracker_payouts{state}``:
  rows counted in the database at scrape time (:mod:`tracker.services.metrics`), so every
  tracker process sharing the database answers the same numbers.
* ``tracker_stations_online``, ``tracker_station_online{station}``,
  ``tracker_station_outbox_pending{station}``, ``tracker_station_outbox_dead{station}``,
  ``tracker_station_heartbeat_age_seconds{station}``: from each station's latest heartbeat
  (:mod:`tracker.services.station_health`); ``tracker_reconcile_lag_seconds{issuer}``: since
  the last successful reconcile pass of that issuer (``+Inf`` when it never succeeded).
* ``tracker_http_request_duration_seconds{route,method,status}``: a histogram recorded by
  :class:`LatencyMiddleware` in this process (label ``route`` is the route template, e.g.
  ``/api/v1/cards/{uid}``, never the raw path, so the label set stays small).

Access is never public: an admin operator (cookie or ``bcop_`` API token), or
``Authorization: Bearer <TRACKER_METRICS_TOKEN>`` when that setting is non-empty (for a
Prometheus server, which cannot sign in).
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request, status
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.orm import sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tracker.models import utcnow
from tracker.services import metrics as metric_service
from tracker.web.auth import require_admin

router = APIRouter(include_in_schema=False)

#: Label of requests that matched no route (a scanner's random paths stay one series).
UNMATCHED = "(unmatched)"


class DatabaseCounts(Collector):
    """Collects the row counts at each scrape, in one short session."""

    def __init__(self, sessions: sessionmaker[Any]) -> None:
        self.sessions = sessions

    def describe(self) -> Iterator[Metric]:
        """The families without samples: lets the registry check names with no query."""
        yield from self._families(metric_service.Counts({}, {}, {}))

    def collect(self) -> Iterator[Metric]:
        with self.sessions() as session:
            found = metric_service.counts(session)
        yield from self._families(found)

    @staticmethod
    def _families(found: metric_service.Counts) -> Iterator[Metric]:
        taps = CounterMetricFamily("tracker_taps", "Taps stored, by outcome", labels=["outcome"])
        for outcome, n in found.taps_by_outcome.items():
            taps.add_metric([outcome], n)
        claims = GaugeMetricFamily("tracker_claims", "Claims, by state", labels=["state"])
        for state, n in found.claims_by_state.items():
            claims.add_metric([state], n)
        payouts = GaugeMetricFamily("tracker_payouts", "Payouts, by state", labels=["state"])
        for state, n in found.payouts_by_state.items():
            payouts.add_metric([state], n)
        yield from (taps, claims, payouts)
        yield from _station_families(found)


def _station_families(found: metric_service.Counts) -> Iterator[Metric]:
    """Station health from the heartbeats; reconcile lag per issuer (+Inf: never)."""
    online = GaugeMetricFamily(
        "tracker_stations_online", "Stations whose last heartbeat is younger than 3 periods")
    online.add_metric([], sum(1 for s in found.stations if s.state == "online"))
    up = GaugeMetricFamily(
        "tracker_station_online", "1 when the station's heartbeat is current", labels=["station"])
    pending = GaugeMetricFamily(
        "tracker_station_outbox_pending",
        "Records waiting in the station's outbox (its last heartbeat)", labels=["station"])
    dead = GaugeMetricFamily(
        "tracker_station_outbox_dead",
        "Records the tracker refused for good, per the station's last heartbeat",
        labels=["station"])
    age = GaugeMetricFamily(
        "tracker_station_heartbeat_age_seconds", "Seconds since the station's last heartbeat",
        labels=["station"])
    now = utcnow()
    for station in found.stations:
        up.add_metric([station.name], 1 if station.state == "online" else 0)
        beat = station.heartbeat
        if beat is None:
            continue
        pending.add_metric([station.name], beat.outbox_pending)
        dead.add_metric([station.name], beat.outbox_dead)
        age.add_metric([station.name], max(0.0, (now - beat.received_at).total_seconds()))
    lag = GaugeMetricFamily(
        "tracker_reconcile_lag_seconds",
        "Seconds since the last successful reconcile of the issuer (+Inf: never)",
        labels=["issuer"])
    for issuer, seconds in found.reconcile_lag.items():
        lag.add_metric([issuer], math.inf if seconds is None else seconds)
    yield from (online, up, pending, dead, age, lag)


class Metrics:
    """One registry per app (tests build many apps in one interpreter)."""

    def __init__(self, sessions: sessionmaker[Any]) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "tracker_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template, method and status",
            labelnames=["route", "method", "status"],
            registry=self.registry,
        )
        self.registry.register(DatabaseCounts(sessions))


class LatencyMiddleware:
    """Times every HTTP request into the app's :class:`Metrics` histogram."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            template = getattr(route, "path_format", None) or getattr(route, "path", None)
            self.metrics.latency.labels(
                route=str(template or UNMATCHED),
                method=str(scope.get("method", "")),
                status=str(status_code),
            ).observe(time.perf_counter() - started)


def install(app: FastAPI) -> None:
    """Add the route and the latency middleware (call once, in ``create_app``)."""
    metrics = Metrics(app.state.sessionmaker)
    app.state.metrics = metrics
    app.include_router(router)
    app.add_middleware(LatencyMiddleware, metrics=metrics)


def _allowed(request: Request) -> None:
    """A matching scrape token, else an admin (401 signed out / 403 not an admin)."""
    token = str(request.app.state.settings.metrics_token)
    scheme, _, sent = request.headers.get("authorization", "").partition(" ")
    sent = sent.strip()
    if scheme.lower() == "bearer" and sent and not sent.startswith("bcop_"):
        if token and hmac.compare_digest(sent.encode(), token.encode()):
            return
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="unknown metrics token (setting metrics_token / TRACKER_METRICS_TOKEN)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    require_admin(request)


@router.get("/metrics")
def scrape(request: Request) -> Response:
    """Prometheus exposition (a sync route: the counts query runs in the thread pool)."""
    _allowed(request)
    metrics: Metrics = request.app.state.metrics
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
