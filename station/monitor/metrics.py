"""``GET /metrics`` of ``station run``: Prometheus text from ``prometheus_client``.

Every value is read at scrape time from the running station (one custom collector, no
counters kept twice): taps by outcome (and refusals by reason) since the process started,
charges by state from the charge journal, the outbox's depth and dead records (from its state
index, so a scrape never holds the outbox long enough to delay a tap), the forwarder's line
to the tracker, the readers, and the heartbeats.

Served on ``[metrics] listen`` (its own listener, see :mod:`station.settings`); with
``[metrics] token`` set, a scrape must send ``Authorization: Bearer <token>`` (compared in
constant time), else it gets 401.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from station.monitor.heartbeat import HeartbeatStatus
from station.monitor.vitals import Vitals


@dataclass(frozen=True)
class TapCounts:
    """Taps the daemon handled since the process started."""

    accepted: int = 0
    refused_by_reason: dict[str, int] = field(default_factory=dict)
    unsupported: int = 0  # not a Bolt Card: nothing recorded
    removed_mid_read: int = 0  # pulled away too early: nothing recorded
    reader_errors: int = 0


@dataclass
class MetricSources:
    """Where each number comes from (callables handed in by :mod:`station.app`)."""

    station_name: str
    vitals: Vitals
    taps: Callable[[], TapCounts]
    outbox: Callable[[], tuple[int, int]]  # (pending, dead): Outbox.waiting
    claims: Callable[[], dict[str, int]] | None = None  # charges by state (journal)
    heartbeat: Callable[[], HeartbeatStatus] | None = None


def _gauge(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


class StationCollector(Collector):
    def __init__(self, sources: MetricSources) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        src = self.sources
        yield _gauge("station_info", "The station's name and version (always 1)", 1,
                     {"station": src.station_name, "version": src.vitals.version})
        yield _gauge("station_start_time_seconds", "When the daemon started (Unix time)",
                     src.vitals.started_at.timestamp())
        yield from self._taps(src.taps())
        yield from self._outbox(src.outbox())
        if src.claims is not None:
            claims = GaugeMetricFamily("station_claims", "Charges in the journal, by state",
                                       labels=["state"])
            for state, n in sorted(src.claims().items()):
                claims.add_metric([state], n)
            yield claims
        health = src.vitals.health()
        yield _gauge("station_forwarder_online",
                     "1 when the tracker answered the forwarder's last attempt", int(health.online))
        yield _gauge("station_forwarder_running", "1 while the forwarder thread runs",
                     int(health.forwarding))
        yield _gauge("station_forwarder_problem", "1 while something stops records flowing",
                     int(health.problem is not None))
        readers = src.vitals.readers()
        yield _gauge("station_readers_present", "Readers open and answering", readers.present)
        yield _gauge("station_readers_configured", "Readers configured", readers.total)
        if src.heartbeat is not None:
            yield from self._heartbeats(src.heartbeat())

    @staticmethod
    def _taps(taps: TapCounts) -> Iterator[Metric]:
        by_outcome = CounterMetricFamily(
            "station_taps", "Taps recorded since start, by outcome", labels=["outcome"])
        by_outcome.add_metric(["accepted"], taps.accepted)
        by_outcome.add_metric(["refused"], sum(taps.refused_by_reason.values()))
        yield by_outcome
        refused = CounterMetricFamily(
            "station_taps_refused", "Refused taps since start, by reason", labels=["reason"])
        for reason, n in sorted(taps.refused_by_reason.items()):
            refused.add_metric([reason], n)
        yield refused
        unrecorded = CounterMetricFamily(
            "station_reads_unrecorded", "Reads that recorded nothing, by why", labels=["why"])
        unrecorded.add_metric(["not_a_bolt_card"], taps.unsupported)
        unrecorded.add_metric(["removed_mid_read"], taps.removed_mid_read)
        yield unrecorded
        errors = CounterMetricFamily("station_reader_errors", "Reader errors since start")
        errors.add_metric([], taps.reader_errors)
        yield errors

    @staticmethod
    def _outbox(waiting: tuple[int, int]) -> Iterator[Metric]:
        pending, dead = waiting
        yield _gauge("station_outbox_pending", "Records waiting to reach the tracker", pending)
        yield _gauge("station_outbox_dead",
                     "Records the tracker refused for good (never sent again)", dead)

    @staticmethod
    def _heartbeats(status: HeartbeatStatus) -> Iterator[Metric]:
        sent = CounterMetricFamily("station_heartbeats", "Heartbeats sent to the tracker",
                                   labels=["result"])
        sent.add_metric(["ok"], status.sent)
        sent.add_metric(["failed"], status.failed)
        yield sent
        yield _gauge("station_heartbeat_ok", "1 when the tracker took the last heartbeat",
                     int(status.sent > 0 and status.last_error is None))
        if status.last_ok is not None:
            yield _gauge("station_heartbeat_last_success_timestamp_seconds",
                         "When the tracker last took a heartbeat (Unix time)", status.last_ok)


def metrics_registry(sources: MetricSources) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StationCollector(sources))
    return registry


def create_metrics_app(registry: CollectorRegistry, *, token: str | None = None) -> Starlette:
    """The ASGI app: ``GET /metrics`` only (Bearer ``token`` when one is set)."""
    expected = token.encode() if token else None

    def scrape(request: Request) -> Response:
        if expected is not None:
            scheme, _, sent = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(sent.strip().encode(),
                                                                     expected):
                return PlainTextResponse(
                    "send the metrics token ([metrics] token / STATION_METRICS_TOKEN) as "
                    "'Authorization: Bearer <token>'\n",
                    status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/metrics", scrape, methods=["GET"])])
