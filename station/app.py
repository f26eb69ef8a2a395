"""The composition root: one function builds the whole station from :class:`StationSettings`.

    readers ─► Daemon (one thread per reader) ─► TapPipeline ─► Outbox ─► Forwarder ─► Uplink
                                                     │  └─ AfterAccept (the charge flow)
                                                     └─ StatusCache ─► Uplink.card_status

Everything is built here, in that order from the end of the chain, and passed in at
construction; no object is changed after it is built, and calls go one way along the arrows
(the pipeline may wait on the forwarder's verdict, nothing calls back upstream).
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType

import httpx

from station.claim.book import ChargeBook
from station.claim.charge import ChargeRegistry
from station.claim.client import LnurlWithdrawClient
from station.claim.hook import ChargeHook, pos_pin
from station.claim.journal import ChargeJournal
from station.claim.runner import ChargeRunner, PinPrompt
from station.claim.watch import InvoiceWatcher
from station.daemon import Daemon, ReaderSlot
from station.invoices import InvoiceSource, make_source
from station.monitor.heartbeat import HeartbeatSender
from station.monitor.metrics import MetricSources, TapCounts
from station.monitor.vitals import Readers, Vitals
from station.outbox.forwarder import Forwarder
from station.outbox.health import StationHealth
from station.outbox.outbox import Outbox
from station.readers import registry
from station.readers.base import Reader
from station.settings import ReaderSpec, StationSettings
from station.tap.pipeline import AfterAccept, TapPipeline
from station.tap.result import TapResult
from station.tap.status import ForgetOnTurnDown, StatusCache
from station.tap.verifier import TapVerifier, build_verifier
from station.uplink.base import Uplink
from station.uplink.null import NullUplink
from station.uplink.records import ClaimRecord

log = logging.getLogger("station.app")


def open_reader(spec: ReaderSpec) -> Reader:
    """Open one configured reader through the reader registry (backend + name substring)."""
    return registry.open_reader(spec.backend, spec.name)


def reader_slot(spec: ReaderSpec) -> ReaderSlot:
    def opener() -> Reader:
        return open_reader(spec)

    return ReaderSlot(label=f"{spec.backend}:{spec.name or '*'}", open=opener)


def build_uplink(settings: StationSettings) -> Uplink:
    """The way into the tracker the settings name: direct database, HTTP API, or none."""
    mode = settings.tracker.mode
    if mode == "direct":
        # Imported here: it loads the tracker (and SQLAlchemy), which a station may not have.
        from station.uplink.direct import DirectUplink

        assert settings.tracker.database_url is not None
        return DirectUplink(settings.tracker.database_url, settings.station_name)
    if mode == "http":
        import httpx

        from station.uplink.http import HttpUplink

        assert settings.tracker.token is not None
        client = httpx.Client(
            base_url=settings.tracker.url or "",
            timeout=httpx.Timeout(3.0, connect=1.0),
        )
        return HttpUplink(client, settings.tracker.token.reveal())
    log.warning("no tracker configured: taps stay in the outbox %s", settings.outbox_path)
    return NullUplink()


@dataclass
class Charging:
    """The charge flow of one station: armed charges, the runner that claims them, the watcher
    that settles them from the merchant's invoices, and the journal that survives a crash."""

    registry: ChargeRegistry
    runner: ChargeRunner
    watcher: InvoiceWatcher
    journal: ChargeJournal
    hook: ChargeHook
    http: httpx.Client

    def start(self) -> None:
        self.runner.recover()
        self.watcher.start()

    def close(self) -> None:
        self.watcher.stop()
        self.journal.close()
        self.http.close()


def build_invoices(settings: StationSettings, http: httpx.Client) -> InvoiceSource | None:
    """The merchant's invoice source the settings name, or None (charges are then refused
    with a message naming the settings to fill)."""
    inv = settings.invoices
    if not inv.configured:
        return None
    assert inv.source is not None
    key = inv.key.reveal() if inv.key is not None else ""
    return make_source(inv.source, inv.url, key, inv.store_id, http)


def build_charging(
    settings: StationSettings,
    outbox: Outbox,
    *,
    invoices: InvoiceSource | None = None,
    http: httpx.Client | None = None,
    pin_prompt: PinPrompt = pos_pin,
) -> Charging:
    """Registry, LNURL-withdraw client, invoice source, journal, runner and watcher; claim
    records go to the same outbox as taps, so the forwarder delivers both in order."""
    http = http if http is not None else httpx.Client(
        timeout=httpx.Timeout(30.0, connect=5.0), follow_redirects=False, trust_env=False,
    )
    source = invoices if invoices is not None else build_invoices(settings, http)
    client = LnurlWithdrawClient(
        http, allowed_hosts=settings.allowed_hosts, insecure_hosts=settings.insecure_hosts,
    )
    journal = ChargeJournal(settings.charges_journal_path)
    book = ChargeBook(journal, lambda body: outbox.append(ClaimRecord(**body)))
    watcher = InvoiceWatcher(source, book.settle)
    runner = ChargeRunner(
        withdraw=client, invoices=source, book=book, watcher=watcher, pin_prompt=pin_prompt,
        invoice_expiry=settings.invoices.expiry,
    )
    registry = ChargeRegistry(default_timeout=settings.pos.charge_timeout)
    return Charging(registry, runner, watcher, journal, ChargeHook(registry, runner), http)


@dataclass
class Station:
    """Everything one daemon process owns, built from one settings object."""

    settings: StationSettings
    outbox: Outbox
    uplink: Uplink
    forwarder: Forwarder
    pipeline: TapPipeline
    daemon: Daemon
    charging: Charging | None = None
    vitals: Vitals | None = None

    def status(self) -> StationHealth:
        """The line to the tracker: online, pending, dead records, what is wrong now (for a
        ``/health`` route or the operator)."""
        return self.forwarder.health()

    def shutdown(self, flush_timeout: float = 3.0) -> int:
        """Stop readers, let the forwarder flush, close; return the number of records spooled."""
        self.daemon.stop()
        self.daemon.join(timeout=10)
        if self.charging is not None:
            self.charging.close()
        left = self.forwarder.stop(flush_timeout=flush_timeout)
        for slot in self.daemon.slots:
            if slot.reader is not None:
                with contextlib.suppress(Exception):
                    slot.reader.close()
        self.uplink.close()
        self.outbox.close()
        return left


def build_station(
    settings: StationSettings,
    *,
    verifier: TapVerifier | None = None,
    uplink: Uplink | None = None,
    slots: Sequence[ReaderSlot] | None = None,
    after_accept: AfterAccept | None = None,
    charging: bool = True,
    invoices: InvoiceSource | None = None,
    pin_prompt: PinPrompt = pos_pin,
    max_taps: int | None = None,
    keep_results: bool = False,
    on_tap: Callable[[TapResult], None] | None = None,
    poll: float = 0.25,
    backoff_max: float = 5.0,
) -> Station:
    """Build settings → uplink, outbox, forwarder, status cache, pipeline, daemon (not started).

    The keyword arguments replace a part the settings would build (tests, the demo, the bench).
    Unless ``after_accept`` is given or ``charging`` is off, accepted taps go to the charge
    flow (:func:`build_charging`): a tap with nothing armed stays a tap.
    """
    if verifier is None:
        verifier = build_verifier(settings.keys, foreign_ok=settings.accept_foreign_cards)
    # The outbox first: a file that is not ours stops the start before anything else is built.
    outbox = Outbox(
        settings.outbox_path, station_name=settings.station_name, fresh=settings.fresh_outbox
    )
    uplink = uplink if uplink is not None else build_uplink(settings)
    status = StatusCache(uplink.card_status, settings.status_ttl)
    forwarder = Forwarder(
        outbox, ForgetOnTurnDown(uplink, status), backoff_initial=0.1, backoff_max=backoff_max
    )
    charges = None
    if after_accept is None and charging:
        charges = build_charging(settings, outbox, invoices=invoices, pin_prompt=pin_prompt)
        after_accept = charges.hook
    pipeline = TapPipeline(
        verifier=verifier,
        station_name=settings.station_name,
        host_allowed=settings.host_allowed,
        memory=outbox,
        status=status,
        outbox=outbox,
        verdicts=forwarder,
        confirm_timeout=settings.confirm_timeout,
        after_accept=after_accept,
        accept_foreign=settings.accept_foreign_cards,
    )
    if slots is None:
        slots = [reader_slot(spec) for spec in settings.readers]
    daemon = Daemon(
        pipeline, slots, debounce=settings.debounce, poll=poll, max_taps=max_taps,
        keep_results=keep_results, on_tap=on_tap,
    )
    vitals = Vitals(lambda: forwarder.health(delivered=False), lambda: readers_of(daemon))
    return Station(settings, outbox, uplink, forwarder, pipeline, daemon, charges, vitals)


def readers_of(daemon: Daemon) -> Readers:
    """Readers configured, and those open and answering now."""
    present = sum(1 for s in daemon.slots if s.reader is not None and s.down_since is None)
    return Readers(present=present, total=len(daemon.slots))


def tap_counts(daemon: Daemon) -> TapCounts:
    stats = daemon.stats
    return TapCounts(
        accepted=stats.accepted, refused_by_reason=dict(stats.refused_by_reason),
        unsupported=stats.unsupported, removed_mid_read=stats.removed_mid_read,
        reader_errors=stats.reader_errors,
    )


#: Every state a charge can have in the journal (shown as 0 when there is none).
CHARGE_STATES = ("sending", "claimed", "pending", "unknown", "paid", "refused", "expired")


def start_heartbeat(station: Station) -> HeartbeatSender | None:
    """Heartbeats to the tracker every ``heartbeat`` seconds (not without a tracker, or at 0)."""
    period = station.settings.heartbeat
    if period <= 0 or station.settings.tracker.mode == "none" or station.vitals is None:
        return None
    sender = HeartbeatSender(station.uplink.send_heartbeat, station.vitals.heartbeat, period)
    sender.start()
    return sender


def serve_metrics(station: Station, heartbeat: HeartbeatSender | None) -> PosServer:
    """``GET /metrics`` on ``[metrics] listen`` (see :mod:`station.monitor.metrics`)."""
    from station.monitor.metrics import create_metrics_app, metrics_registry

    assert station.vitals is not None
    charging = station.charging

    def claims() -> dict[str, int]:
        assert charging is not None
        return {**dict.fromkeys(CHARGE_STATES, 0), **charging.journal.counts()}

    sources = MetricSources(
        station_name=station.settings.station_name,
        vitals=station.vitals,
        taps=lambda: tap_counts(station.daemon),
        outbox=station.outbox.waiting,
        claims=claims if charging is not None else None,
        heartbeat=heartbeat.status if heartbeat is not None else None,
    )
    token = station.settings.metrics.token
    app = create_metrics_app(metrics_registry(sources),
                             token=token.reveal() if token is not None else None)
    url, stop = _serve(app, "[metrics] listen", station.settings.metrics.address())
    log.info("metrics on %s/metrics (token %s)", url, "required" if token else "not set",
             extra={"fields": {"event": "metrics_listening", "url": url}})
    return PosServer(url, stop)


def run_station(
    station: Station, *, install_signals: bool = True, flush_timeout: float = 3.0
) -> int:
    """Run until SIGTERM/SIGINT (or max_taps); finish the tap in flight, flush, return 0."""
    if install_signals:
        def _on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("signal %d: finishing the tap in flight and stopping", signum)
            station.daemon.stop()

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
    pruned = station.outbox.prune()
    if pruned:
        log.info("pruned %d settled records older than 30 days from the outbox", pruned)
    station.forwarder.start()
    heartbeat = start_heartbeat(station)
    metrics = pos = None
    try:
        if station.settings.metrics.listen:
            metrics = serve_metrics(station, heartbeat)
        if station.charging is not None:
            station.charging.start()
            if station.settings.pos.listen:
                pos = serve_pos(station)
        log.info(
            "station %s watching %s; tracker: %s; outbox %s (%d pending)",
            station.settings.station_name,
            ", ".join(s.label for s in station.daemon.slots),
            station.settings.tracker.mode,
            station.settings.outbox_path,
            station.outbox.pending_count(),
        )
        station.daemon.run()
    finally:
        if pos is not None:
            pos.stop()
        if metrics is not None:
            metrics.stop()
        if heartbeat is not None:
            heartbeat.stop()
        left = station.shutdown(flush_timeout=flush_timeout)
        if left:
            log.warning("%d taps still spooled in %s; they go out on the next start", left,
                        station.settings.outbox_path)
        else:
            log.info("stopped; outbox empty")
    return 0


class ListenerUnavailable(RuntimeError):
    """A listener ``station run`` was told to open cannot be bound (the port is taken, the
    address is not this machine's). The message names the setting to change."""


def _serve(app: object, setting: str, address: tuple[str, int]) -> tuple[str, Callable[[], None]]:
    from station.serve import serve_in_thread

    host, port = address
    try:
        return serve_in_thread(app, host, port)
    except OSError as exc:
        raise ListenerUnavailable(
            f"cannot listen on {host}:{port} ({setting}): {exc.strerror or exc}; "
            "choose a free port or another address"
        ) from None


@dataclass
class PosServer:
    """A listener ``station run`` serves (the POS endpoint, ``/metrics``)."""

    url: str
    stop: Callable[[], None]


def serve_pos(station: Station) -> PosServer:
    """Serve the POS endpoint on ``[pos] listen`` (127.0.0.1 unless told otherwise)."""
    from station.pos.app import create_pos_app

    assert station.charging is not None
    token = station.settings.pos.token
    app = create_pos_app(
        station.charging.registry, token=token.reveal() if token is not None else None,
        readers=[slot.label for slot in station.daemon.slots],
    )
    url, stop = _serve(app, "[pos] listen", station.settings.pos.address())
    log.info("POS endpoint on %s/ (token %s)", url, "required" if token else "not set",
             extra={"fields": {"event": "pos_listening", "url": url}})
    return PosServer(url, stop)
