"""Charges: tap-to-paid latency on loopback, the station's own share of it, memory over 1,000.

    python -m bench charge          # BENCH_QUICK=1 for a smaller run

The demo wallet (LNbits API) and the demo issuer (BTCPay's Bolt Card endpoint, paying through
the wallet) run in a child process, so this process holds only the station's side: the real
:class:`LnurlWithdrawClient`, the real LNbits invoice source, the charge journal (fsync) and
the outbox, driven by :class:`ChargeRunner` as the pipeline's hook drives it. Each tap is read
from an emulated Bolt Card (3 APDUs, real SUN), so the issuer verifies a genuine tap.

Rows:

1. tap-to-paid: from reading the card to the runner returning ``paid`` (the merchant's
   invoice looked up as paid) — median and p99;
2. the station's own share: that total minus the time spent inside HTTP requests to the issuer
   and the invoice source (measured by a transport wrapper, body reads included) and minus
   any poll sleeps — target median <= 15 ms;
3. of that share, the time in the charge book (journal commit with fsync + claim record to the
   outbox, three times per charge: sending, claimed, paid) — the disk's part;
4. RSS of this process after the warm-up, after half of the charges and after all of them.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench import latency_row, quick, rss_kib

UID = bytes.fromhex("04C0FFEE0000B1")
ISSUER_KEY = bytes.fromhex("0c0ffee00c0ffee00c0ffee00c0ffee0")
MERCHANT_KEY = "bench-merchant-invoice-key"
AMOUNT_SATS = 10
TARGET_MS = 15.0


# -- the peers, in a child process ---------------------------------------------------------------


def _serve_peers(conn: Any, pull_payment_msat: int) -> None:
    """Child process: demo wallet + demo issuer on loopback; send their URLs, wait for "stop"."""
    import logging

    from station.demo.books import PullPayment
    from station.demo.issuer import IssuerConfig, create_app
    from station.demo.issuer import serve_in_thread as serve_issuer
    from station.demo.payer import LnbitsPayer
    from station.demo.wallet import WalletConfig
    from station.demo.wallet import create_app as create_wallet
    from station.serve import serve_in_thread

    logging.disable(logging.WARNING)  # the peers' "TEST PEER" banners are not bench output
    merchant = WalletConfig("merchant", MERCHANT_KEY, "bench-merchant-admin-key", 0)
    issuer_wallet = WalletConfig("issuer", "bench-issuer-invoice-key", "bench-issuer-admin-key",
                                 pull_payment_msat * 2)
    wallet_url, stop_wallet = serve_in_thread(create_wallet([merchant, issuer_wallet]))
    config = IssuerConfig(
        payer=LnbitsPayer(wallet_url, issuer_wallet.admin_key),
        pull_payments=[PullPayment("pp1", "Bench pull payment", pull_payment_msat)],
        issuer_key=ISSUER_KEY, pay_timeout_s=5.0,
    )
    issuer_url, stop_issuer = serve_issuer(create_app(config))
    conn.send((wallet_url, issuer_url))
    try:
        conn.recv()
    finally:
        stop_issuer()
        stop_wallet()


class Peers:
    def __init__(self, pull_payment_msat: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve_peers, args=(child, pull_payment_msat),
                                 daemon=True)
        self._proc.start()
        if not self._conn.poll(60):
            self._proc.kill()
            raise RuntimeError("the demo peers did not start within 60 s")
        self.wallet_url, self.issuer_url = self._conn.recv()

    def close(self) -> None:
        self._conn.send("stop")
        self._proc.join(15)
        if self._proc.is_alive():
            self._proc.kill()


def _provisioned_card(tmp: Path, issuer_url: str) -> Any:
    """An emulated card linked to the issuer's pull payment and programmed with its keys."""
    from station.emulator import store
    from station.ntag424 import flows
    from station.ntag424.keys import KeySet
    from station.ntag424.ndef import bolt_card_template

    got = httpx.post(f"{issuer_url}/api/v1/pull-payments/pp1/boltcards",
                     json={"UID": UID.hex().upper(), "onExisting": "UpdateVersion"},
                     trust_env=False)
    got.raise_for_status()
    answer = got.json()
    card, _ = store.load_or_create(tmp / "card.json", UID, save_new=False)
    version = int(answer.get("version", 1))
    keys = KeySet(*(bytes.fromhex(answer[f"K{i}"]) for i in range(5)), version=version)
    flows.drive(flows.provision_bolt_card(bolt_card_template(answer["LNURLW"]), keys, os.urandom,
                                          key_version=version), card.transceive)
    return card


# -- time spent waiting on the peers ---------------------------------------------------------------


class _TimedStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, clock: WaitClock) -> None:
        self._inner = inner
        self._clock = clock

    def __iter__(self) -> Iterator[bytes]:
        it = iter(self._inner)
        while True:
            with self._clock.waiting():
                chunk = next(it, None)
            if chunk is None:
                return
            yield chunk

    def close(self) -> None:
        with self._clock.waiting():
            self._inner.close()


class WaitClock:
    """Seconds this thread spent waiting on a peer (inside a request or a poll sleep)."""

    def __init__(self) -> None:
        self.waited = 0.0
        self.requests = 0

    def waiting(self) -> _Span:
        return _Span(self)

    def sleep(self, seconds: float) -> None:
        with self.waiting():
            time.sleep(seconds)


class _Span:
    def __init__(self, clock: WaitClock) -> None:
        self._clock = clock
        self._start = 0.0

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self._clock.waited += time.perf_counter() - self._start


class TimedTransport(httpx.BaseTransport):
    """Wraps the real transport: connect, send, wait for the answer and read its body are the
    peer's time; everything else the station's."""

    def __init__(self, inner: httpx.BaseTransport, clock: WaitClock) -> None:
        self._inner = inner
        self._clock = clock

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._clock.requests += 1
        with self._clock.waiting():
            response = self._inner.handle_request(request)
        assert isinstance(response.stream, httpx.SyncByteStream)
        return httpx.Response(response.status_code, headers=response.headers,
                              stream=_TimedStream(response.stream, self._clock),
                              extensions=response.extensions, request=request)

    def close(self) -> None:
        self._inner.close()


def _timed_book(base: type) -> type:
    """The real ChargeBook, timing its two writes (journal fsync + outbox append)."""

    class TimedBook(base):  # type: ignore[valid-type,misc]
        spent = 0.0

        def begin(self, *args: Any, **kw: Any) -> Any:
            start = time.perf_counter()
            try:
                return super().begin(*args, **kw)
            finally:
                self.spent += time.perf_counter() - start

        def settle(self, *args: Any, **kw: Any) -> Any:
            start = time.perf_counter()
            try:
                return super().settle(*args, **kw)
            finally:
                self.spent += time.perf_counter() - start

    return TimedBook


# -- the station side ------------------------------------------------------------------------------


class StationSide:
    """What ``build_charging`` builds, with the timed transport under the shared HTTP client."""

    def __init__(self, tmp: Path, wallet_url: str) -> None:
        from station.claim.book import ChargeBook
        from station.claim.charge import ChargeRegistry
        from station.claim.client import LnurlWithdrawClient
        from station.claim.journal import ChargeJournal
        from station.claim.runner import ChargeRunner
        from station.claim.watch import InvoiceWatcher
        from station.invoices import make_source
        from station.outbox.outbox import Outbox
        from station.uplink.records import ClaimRecord

        self.clock = WaitClock()
        self.http = httpx.Client(
            transport=TimedTransport(httpx.HTTPTransport(), self.clock),
            timeout=httpx.Timeout(30.0, connect=5.0), follow_redirects=False, trust_env=False,
        )
        source = make_source("lnbits", wallet_url, MERCHANT_KEY, None, self.http)
        client = LnurlWithdrawClient(self.http, allowed_hosts=["127.0.0.1"],
                                     insecure_hosts=["127.0.0.1"])
        self.outbox = Outbox(tmp / "outbox.sqlite", station_name="bench-till")
        self.journal = ChargeJournal(tmp / "charges.sqlite")
        book = _timed_book(ChargeBook)(self.journal,
                                       lambda body: self.outbox.append(ClaimRecord(**body)))
        self.book = book
        self.watcher = InvoiceWatcher(source, book.settle)
        self.runner = ChargeRunner(withdraw=client, invoices=source, book=book,
                                   watcher=self.watcher, sleep=self.clock.sleep)
        self.registry = ChargeRegistry(default_timeout=60.0)
        self.taps = 0
        self.watcher.start()

    def charge(self, card: Any) -> tuple[float, float, float, str]:
        """One charge: (total s, waiting on peers s, in the book s, final state)."""
        from station.claim.runner import TappedCard
        from station.ntag424 import flows

        charge = self.registry.arm(AMOUNT_SATS, "bench")
        waited_before = self.clock.waited
        booked_before = self.book.spent
        start = time.perf_counter()
        url = flows.drive(flows.read_sun_url(), card.transceive)  # the tap: 3 APDUs, fresh SUN
        self.taps += 1
        taken = self.registry.take("emulated")
        assert taken is charge
        uid = UID.hex().upper()
        tapped = TappedCard(url=url, tap_key=f"{uid}:{self.taps}", uid=uid, counter=None,
                            card_id=None, verified=True, host="127.0.0.1")
        self.runner.run(charge, tapped)
        total = time.perf_counter() - start
        return total, self.clock.waited - waited_before, self.book.spent - booked_before, \
            charge.state

    def close(self) -> None:
        self.watcher.stop()
        self.journal.close()
        self.outbox.close()
        self.http.close()


def run() -> list[dict[str, Any]]:
    import logging

    n = 200 if quick() else 1_000
    # Warm up past what the registry keeps for the POS page, so that the measured run starts
    # from the steady state (a full registry, warm SQLite caches) and flat means flat.
    warmup = 20 if quick() else 250
    logging.getLogger("station").setLevel(logging.WARNING)  # one info line per charge
    rows: list[dict[str, Any]] = []
    peers = Peers(pull_payment_msat=(n + warmup + 10) * AMOUNT_SATS * 1000)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-charge-") as tmp:
            card = _provisioned_card(Path(tmp), peers.issuer_url)
            side = StationSide(Path(tmp), peers.wallet_url)
            try:
                for _ in range(warmup):
                    assert side.charge(card)[3] == "paid"
                gc.collect()
                rss_start, blocks_start = rss_kib(), sys.getallocatedblocks()
                threads_start = threading.active_count()
                totals: list[float] = []
                own: list[float] = []
                booked: list[float] = []
                rss_half = 0
                requests_before = side.clock.requests
                for i in range(n):
                    total, waited, book, state = side.charge(card)
                    if state != "paid":
                        raise RuntimeError(f"charge {i} ended {state}, not paid")
                    totals.append(total)
                    own.append(total - waited)
                    booked.append(book)
                    if i == n // 2:
                        rss_half = rss_kib()
                gc.collect()
                rss_end, blocks_end = rss_kib(), sys.getallocatedblocks()
                threads_end = threading.active_count()
                per_charge = (side.clock.requests - requests_before) / n
                keep = side.registry.keep
            finally:
                side.close()
    finally:
        peers.close()
    detail = (f"{n} charges of {AMOUNT_SATS} sats in a row on loopback; emulated card, demo "
              f"issuer + demo wallet in a child process; {per_charge:.0f} HTTP requests each")
    rows.append(latency_row("tap to paid (total)", totals, detail))
    share = latency_row("station's own share (total - HTTP waits)", own,
                        f"target median <= {TARGET_MS:g} ms; journal fsync + outbox included")
    share["ok"] = share["p50_ms"] <= TARGET_MS
    rows.append(share)
    rows.append(latency_row("  of which the charge book (3 x journal fsync + outbox)", booked,
                            "the disk's part of the share; the rest is CPU (bolt11 decoding, "
                            "LNURL parsing, the card read)"))
    growth = rss_end - rss_start
    rows.append({
        "case": f"RSS over {n} charges",
        "value": growth, "unit": "KiB growth",
        "ok": growth < 4096 if not quick() else None,
        "detail": (f"after warm-up {rss_start} KiB, after {n // 2} {rss_half} KiB, after {n} "
                   f"{rss_end} KiB; Python heap blocks {blocks_start} -> {blocks_end}; threads "
                   f"{threads_start} -> {threads_end}; the registry keeps the last "
                   f"{keep} charges for the POS page and SQLite caches up to 2 MiB per "
                   "connection (outbox, journal): both bounded"),
    })
    return rows
