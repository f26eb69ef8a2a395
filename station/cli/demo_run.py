"""The moving parts of ``station demo``: the tracker process, the test peers, the cards and the
scheduler that taps them (see :mod:`station.cli.demo` for the picture)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from station.claim.charge import ChargeError, ChargeRegistry
from station.cli.demo import DEMO_ISSUER_KEY, DEMO_UIDS, OPERATOR, STATION_NAME
from station.demo.books import PullPayment
from station.demo.issuer import CardConfig, IssuerConfig, create_app
from station.demo.issuer import serve_in_thread as serve_issuer
from station.demo.payer import LnbitsPayer
from station.demo.wallet import WalletConfig
from station.demo.wallet import create_app as create_wallet
from station.demo.webhooks import WebhookTarget
from station.emulator import store
from station.emulator.card import EmulatedCard
from station.ntag424 import flows
from station.ntag424.keys import derive_keys
from station.ntag424.ndef import bolt_card_template, ndef_file, uri_record
from station.readers.emulated import EmulatedReader
from station.serve import serve_in_thread
from station.tap.result import TapResult

log = logging.getLogger("station.demo")

# Fixed, public toy keys of the demo wallet (a test peer holding play money).
MERCHANT = WalletConfig("merchant", "demo-merchant-invoice-key", "demo-merchant-admin-key", 0)
ISSUER_WALLET = WalletConfig("issuer", "demo-issuer-invoice-key", "demo-issuer-admin-key",
                             100_000_000_000)
PULL_PAYMENT = PullPayment("demo-pp", "Demo pull payment", 50_000_000_000)
ISSUER_API_KEY = "demo-issuer-greenfield-key"
ISSUER_NAME = "demo"
WEBHOOK_SECRET = "demo-webhook-secret-not-a-real-one"
AMOUNTS_SATS = (210, 990, 1500, 2100, 3500, 4200, 6900, 12_000)
MEMOS = ("Coffee", "Croissant", "Flat white", "Sandwich", "Tea", "Cake", "Lunch", "Juice")


class DemoError(Exception):
    """Something the demo needs is missing; the message says what."""


# -- the tracker, as its own process ------------------------------------------------------------


def _tracker(args: list[str], db_url: str, stdin: str | None = None) -> str:
    env = {**os.environ, "TRACKER_DATABASE_URL": db_url}
    proc = subprocess.run([sys.executable, "-m", "tracker", *args], input=stdin, env=env,
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise DemoError(f"`tracker {' '.join(args[:2])}` failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout


def _secret_file(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value)


def prepare_tracker(state_dir: Path, db_url: str) -> tuple[str, str]:
    """Migrate; create the operator and the station once, keep their secrets in the state
    directory (mode 0600) so a restart prints the same login. Returns (password, token)."""
    _tracker(["db", "upgrade"], db_url)
    login, token_file = state_dir / "login", state_dir / "station-token"
    if not login.exists():
        password = secrets.token_urlsafe(12)
        _tracker(["users", "add", OPERATOR, "--role", "admin", "--password-stdin"], db_url,
                 stdin=password + "\n")
        _secret_file(login, password)
    if not token_file.exists():
        out = _tracker(["--json", "stations", "add", STATION_NAME], db_url)
        _secret_file(token_file, json.loads(out)["token"])
    return login.read_text().strip(), token_file.read_text().strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def tracker_process(db_url: str, port: int, log_path: Path) -> Iterator[str]:
    """``tracker serve`` on 127.0.0.1:port until the block ends."""
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "TRACKER_DATABASE_URL": db_url}
    with open(log_path, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tracker", "serve", "--port", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise DemoError(f"the tracker stopped at start-up; its log: {log_path}")
            try:
                httpx.get(f"{url}/login", timeout=1.0, trust_env=False)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise DemoError(f"the tracker did not answer on {url}") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- the peers and the cards --------------------------------------------------------------------


@dataclass
class Peers:
    wallet_url: str
    issuer_url: str
    lnurlw: str
    stops: list[Any] = field(default_factory=list)

    def stop(self) -> None:
        for stop in reversed(self.stops):
            with contextlib.suppress(Exception):
                stop()


def follow_issuer(db_url: str, issuer_url: str) -> None:
    """Tell the tracker to follow the demo issuer's payouts (webhooks + Greenfield polling),
    as an operator would with ``tracker issuers add``; again when its address changed."""
    listed = json.loads(_tracker(["issuers", "list", "--json"], db_url))
    known = {row["name"]: row for row in listed}
    if ISSUER_NAME in known and known[ISSUER_NAME]["url"].rstrip("/") == issuer_url:
        return
    if ISSUER_NAME in known:
        _tracker(["issuers", "remove", ISSUER_NAME], db_url)
    _tracker(["issuers", "add", ISSUER_NAME, "--kind", "btcpay", "--url", issuer_url,
              "--store-id", "demo-store", "--api-key", ISSUER_API_KEY,
              "--webhook-secret", WEBHOOK_SECRET], db_url)


def start_peers(state_dir: Path, issuer_port: int, tracker_url: str) -> Peers:
    wallet_url, stop_wallet = serve_in_thread(
        create_wallet([MERCHANT, ISSUER_WALLET], state_path=state_dir / "wallet.json"))
    cards = [CardConfig(uid, PULL_PAYMENT.id) for uid in DEMO_UIDS]
    config = IssuerConfig(
        payer=LnbitsPayer(wallet_url, ISSUER_WALLET.admin_key), pull_payments=[PULL_PAYMENT],
        cards=cards, issuer_key=DEMO_ISSUER_KEY, api_keys=[ISSUER_API_KEY], pay_timeout_s=5.0,
        webhooks=[WebhookTarget(f"{tracker_url}/webhooks/btcpay/{ISSUER_NAME}", WEBHOOK_SECRET)],
        webhook_retry_delays_s=(1.0, 5.0, 30.0),
    )
    if issuer_port and not port_free(issuer_port):
        stop_wallet()
        raise DemoError(f"port {issuer_port} (the demo issuer) is taken: --issuer-port PORT")
    issuer_url, stop_issuer = serve_issuer(create_app(config), port=issuer_port)
    lnurlw = issuer_url.replace("http://", "lnurlw://") + "/boltcard"
    return Peers(wallet_url, issuer_url, lnurlw, [stop_wallet, stop_issuer])


def demo_cards(cards_dir: Path, lnurlw: str) -> list[tuple[EmulatedCard, Path]]:
    """The demo cards, provisioned for ``lnurlw``; re-provisioned when they name another
    issuer address (an older demo, or another ``--issuer-port``)."""
    cards_dir.mkdir(parents=True, exist_ok=True)
    marker = cards_dir / "lnurlw.txt"
    if not marker.exists() or marker.read_text().strip() != lnurlw:
        for old in cards_dir.glob("*.json"):
            old.unlink()
        marker.write_text(lnurlw + "\n")
    out = []
    for uid_hex in DEMO_UIDS:
        path = cards_dir / f"{uid_hex}.json"
        out.append((load_or_provision(path, bytes.fromhex(uid_hex), DEMO_ISSUER_KEY, lnurlw),
                    path))
    return out


def load_or_provision(path: Path, uid: bytes, issuer_key: bytes, base_url: str) -> EmulatedCard:
    """An emulated card from its state file, or a factory card provisioned as a Bolt Card
    (URL ``base_url?p=…&c=…``, keys derived from ``issuer_key`` at version 1) and saved."""
    card, created = store.load_or_create(path, uid, save_new=False)
    if created:
        flows.drive(
            flows.provision_bolt_card(
                bolt_card_template(base_url), lambda u: derive_keys(issuer_key, u, 1),
                os.urandom),
            card.transceive,
        )
        store.save(path, card)
    return card


class UrlCard:
    """A card that answers the read path with a fixed URL: a replayed or forged tap.

    It answers the reader's get-UID like the genuine card would, so the refusal is recorded
    against the card it imitates.
    """

    def __init__(self, uid: bytes, url: str) -> None:
        self.uid = uid
        self._file = ndef_file(uri_record(url))

    def transceive(self, apdu: bytes) -> bytes:
        if apdu[:2] == b"\xff\xca":
            return self.uid + b"\x90\x00"
        if apdu[:1] == b"\xff" or apdu[1:2] == b"\xa4":
            return b"\x90\x00"
        if apdu[1:2] == b"\xb0":
            offset = int.from_bytes(apdu[2:4], "big")
            le = (apdu[4] if len(apdu) > 4 else 0) or 256
            return self._file[offset : offset + le] + b"\x90\x00"
        return b"\x6d\x00"

    def deselect(self) -> None:
        pass


def forge(url: str) -> str:
    """The same URL with one digit of the MAC changed."""
    last = url[-1]
    return url[:-1] + ("0" if last != "0" else "1")


# -- the scheduler ------------------------------------------------------------------------------


class AcceptedUrls:
    """The daemon's ``on_tap``: remembers recent accepted URLs, for the replays."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.urls: list[tuple[bytes, str]] = []

    def __call__(self, result: TapResult) -> None:
        if result.accepted and result.url and result.uid:
            with self._lock:
                self.urls.append((bytes.fromhex(result.uid), result.url))
                del self.urls[:-20]

    def recent(self) -> list[tuple[bytes, str]]:
        with self._lock:
            return list(self.urls)


class Scheduler:
    """Taps the demo cards on the reader; arms a charge before most genuine taps."""

    def __init__(self, reader: EmulatedReader, cards: list[tuple[EmulatedCard, Path]],
                 interval: float, accepted: AcceptedUrls, registry: ChargeRegistry,
                 reader_label: str, rng: random.Random | None = None) -> None:
        self.reader = reader
        self.cards = cards
        self.interval = interval
        self.accepted = accepted
        self.registry = registry
        self.reader_label = reader_label
        self.rng = rng or random.Random()
        self.stop = threading.Event()
        self._n = 0

    def _next_card(self) -> tuple[Any, Path | None]:
        self._n += 1
        old = self.accepted.recent()
        if old and self._n % 7 == 0:
            uid, url = self.rng.choice(old)
            return UrlCard(uid, url), None  # a replay of a URL the station already accepted
        if old and self._n % 11 == 0:
            uid, url = old[-1]
            return UrlCard(uid, forge(url)), None
        card, path = self.cards[self._n % len(self.cards)]
        return card, path

    def _arm(self) -> Any:
        if self._n % 4 == 3:
            return None  # now and then a tap with nothing armed: recorded as a tap only
        try:
            return self.registry.arm(self.rng.choice(AMOUNTS_SATS), self.rng.choice(MEMOS),
                                     reader=self.reader_label, timeout=30)
        except ChargeError:
            return None  # the merchant armed one on the POS page: leave it to them

    def _await_outcome(self, charge: Any) -> None:
        """Leave the card on the reader until its charge has an outcome (or cancel a charge
        whose tap was refused: it would wait for another card)."""
        deadline = time.monotonic() + 2.0
        while charge.state == "armed" and time.monotonic() < deadline:
            self.stop.wait(0.02)
        if charge.state == "armed":
            with contextlib.suppress(ChargeError, KeyError):
                self.registry.cancel(charge.id)
            return
        for event in charge.follow(20.0, poll=0.5):
            if event is not None and event.kind == "outcome":
                return

    def run(self) -> None:
        dwell = min(0.5, self.interval / 2)
        while not self.stop.is_set():
            card, path = self._next_card()
            charge = self._arm() if path is not None else None
            self.reader.present(card)
            self.stop.wait(dwell)
            if charge is not None:
                self._await_outcome(charge)
            self.reader.remove()
            if path is not None:
                store.save(path, card)
            self.stop.wait(max(self.interval - dwell, 0.02))


# -- the command --------------------------------------------------------------------------------


def run_demo(args: argparse.Namespace) -> int:
    from station.app import build_station, run_station
    from station.daemon import ReaderSlot, setup_logging
    from station.settings import (
        InvoiceSettings,
        KeySettings,
        PosSettings,
        Secret,
        StationSettings,
        TrackerLink,
    )

    setup_logging(args.log_format)
    for noisy in ("uvicorn.error", "station.demo.issuer"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    state_dir: Path = args.dir
    state_dir.mkdir(parents=True, exist_ok=True)
    print("station demo: preparing the tracker database (first run: a few seconds)…",
          flush=True)
    db_url = f"sqlite:///{(state_dir / 'tracker.sqlite').absolute()}"
    password, token = prepare_tracker(state_dir, db_url)
    port = args.port if args.port and port_free(args.port) else free_port()
    pos_port = args.pos_port if args.pos_port and port_free(args.pos_port) else free_port()
    peers = start_peers(state_dir, args.issuer_port, f"http://127.0.0.1:{port}")
    try:
        follow_issuer(db_url, peers.issuer_url)
        cards = demo_cards(state_dir / "cards", peers.lnurlw)
        with tracker_process(db_url, port, state_dir / "tracker.log") as url:
            settings = StationSettings(
                station_name=STATION_NAME,
                keys=KeySettings(issuer_key=Secret(DEMO_ISSUER_KEY.hex()), issuer_key_version=1),
                tracker=TrackerLink(url=url, token=Secret(token)),
                allowed_hosts=("127.0.0.1",), insecure_hosts=("127.0.0.1",),
                outbox_path=state_dir / "station-outbox.sqlite",
                debounce=0.0, confirm_timeout=2.0,
                invoices=InvoiceSettings(source="demo", url=peers.wallet_url,
                                         key=Secret(MERCHANT.invoice_key)),
                pos=PosSettings(listen=f"127.0.0.1:{pos_port}"),
            )
            reader = EmulatedReader("Demo reader")
            accepted = AcceptedUrls()
            label = "emulated:demo"
            station = build_station(
                settings, slots=[ReaderSlot(label, open=lambda: reader)],
                max_taps=args.taps, on_tap=accepted, poll=0.05,
            )
            assert station.charging is not None
            scheduler = Scheduler(reader, cards, args.interval, accepted,
                                  station.charging.registry, label)
            print(f"tracker: {url}/  (login: {OPERATOR} / {password})", flush=True)
            print(f"POS page: http://127.0.0.1:{pos_port}/   "
                  f"demo issuer (test peer): {peers.issuer_url}",
                  flush=True)
            print(f"cards: {len(cards)} emulated Bolt Cards under {state_dir / 'cards'}; "
                  "charges are armed on a schedule", flush=True)
            feeder = threading.Thread(target=scheduler.run, name="demo-scheduler", daemon=True)
            feeder.start()
            print("station running; Ctrl-C to stop", flush=True)
            try:
                run_station(station, flush_timeout=5)
            finally:
                scheduler.stop.set()
                feeder.join(timeout=15)
    finally:
        peers.stop()
    return 0
