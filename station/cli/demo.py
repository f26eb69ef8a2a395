"""``station demo`` (``make demo``): the whole product on one machine, no hardware.

It starts the tracker on SQLite under ``./var/demo/`` (migrated; an operator login printed; a
station token created), serves it on 127.0.0.1:8080 (or a free port), creates a few emulated
NTAG 424 DNA cards provisioned as Bolt Cards with deterministic keys from a demo issuer key
(state files under ``./var/demo/cards/`` so counters survive restarts), and runs the station
daemon with an in-process reader onto which a scheduler taps the cards every ~2 s. Now and then it
replays a URL the station already accepted, or presents a URL with a forged MAC, so the
dashboard shows refusals too. Ctrl-C stops it; ``--taps N`` stops after N taps.

The demo issuer key is printed nowhere and is fixed and public: these cards are toys.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from station.cli import EXIT_ENVIRONMENT, EXIT_OK

if TYPE_CHECKING:
    import random

# socket, threading, random and logging are imported where they are used: ``station`` start-up
# registers every subcommand, and only ``station demo`` needs them.

# A fixed, public demo issuer key: NEVER use it for real cards.
DEMO_ISSUER_KEY = bytes.fromhex("de30de30de30de30de30de30de30de30")
DEMO_BASE_URL = "lnurlw://demo.boltcard.invalid/ln/withdraw"
DEMO_HOST = "demo.boltcard.invalid"
DEMO_UIDS = ("04D3A0000D3A01", "04D3A0000D3A02", "04D3A0000D3A03")
STATION_NAME = "demo-station"
OPERATOR = "operator"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo", help="run tracker + station + emulated cards on this machine",
        description="Start the tracker, emulated Bolt Cards and the station daemon together.",
    )
    p.add_argument("--dir", type=Path, default=Path("var/demo"), help="state directory")
    p.add_argument("--port", type=int, default=8080, help="tracker port (0 = any free port)")
    p.add_argument("--taps", type=int, default=None, help="stop after N taps")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between taps")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_demo)


# -- cards ------------------------------------------------------------------------------------


class UrlCard:
    """A card that answers the read path with a fixed URL: a replayed or forged tap.

    It answers the reader's get-UID like the genuine card would, so the refusal is recorded
    against the card it imitates.
    """

    def __init__(self, uid: bytes, url: str) -> None:
        from station.ntag424.ndef import ndef_file, uri_record

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


def load_or_provision(path: Path, uid: bytes, issuer_key: bytes, base_url: str) -> Any:
    """An emulated card from its state file, or a factory card provisioned as a Bolt Card."""
    from station.emulator import store
    from station.ntag424 import flows
    from station.ntag424.keys import derive_keys
    from station.ntag424.ndef import bolt_card_template

    card, created = store.load_or_create(path, uid, save_new=False)
    if not created:
        return card
    flows.drive(
        flows.provision_bolt_card(
            bolt_card_template(base_url), lambda u: derive_keys(issuer_key, u, 1), os.urandom
        ),
        card.transceive,
    )
    store.save(path, card)
    return card


def forge(url: str) -> str:
    """The same URL with one digit of the MAC changed."""
    last = url[-1]
    return url[:-1] + ("0" if last != "0" else "1")


# -- tracker ----------------------------------------------------------------------------------


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare_tracker(state_dir: Path) -> tuple[Any, Any, str, str]:
    """Migrate the demo database; (re)create the operator login and the station token."""
    from tracker import migrations
    from tracker.db import make_engine, make_sessionmaker
    from tracker.models import Role
    from tracker.security import generate_password
    from tracker.services import stations, users
    from tracker.settings import load_settings

    state_dir.mkdir(parents=True, exist_ok=True)
    db = (state_dir / "tracker.sqlite").absolute()
    settings = load_settings(env={}, database_url=f"sqlite:///{db}")
    engine = make_engine(settings)
    migrations.upgrade(engine)
    password = generate_password()
    with make_sessionmaker(engine)() as session:
        try:
            users.create_user(session, username=OPERATOR, password=password, role=Role.admin)
        except users.UserExists:
            session.rollback()
            users.set_password(session, username=OPERATOR, password=password)
        try:
            _station, token = stations.create_station(session, name=STATION_NAME)
        except stations.StationExists:
            session.rollback()
            token = stations.rotate_token(session, name=STATION_NAME)
    return settings, engine, password, token


@contextlib.contextmanager
def serve_tracker(settings: Any, engine: Any, port: int) -> Iterator[str]:
    import threading

    import uvicorn

    from tracker.web.app import create_app

    app = create_app(settings, engine=engine)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="tracker", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the tracker did not start on 127.0.0.1:{port}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# -- the scheduler --------------------------------------------------------------------------


class Scheduler:
    """Taps the demo cards on the reader: mostly genuine taps, sometimes a replay or a forgery."""

    def __init__(self, reader: Any, cards: list[tuple[Any, Path]], interval: float,
                 rng: random.Random | None = None) -> None:
        import random
        import threading

        self.reader = reader
        self.cards = cards
        self.interval = interval
        self.rng = rng or random.Random()
        self.accepted_urls: list[tuple[bytes, str]] = []
        self._lock = threading.Lock()
        self.stop = threading.Event()
        self._n = 0

    def on_tap(self, result: Any) -> None:
        if result.accepted and result.url and result.uid:
            with self._lock:
                self.accepted_urls.append((bytes.fromhex(result.uid), result.url))
                del self.accepted_urls[:-20]

    def _next_card(self) -> tuple[Any, Path | None]:
        self._n += 1
        with self._lock:
            old = list(self.accepted_urls)
        if old and self._n % 7 == 0:
            uid, url = self.rng.choice(old)
            return UrlCard(uid, url), None  # replay of a URL the station already accepted
        if old and self._n % 11 == 0:
            uid, url = old[-1]
            return UrlCard(uid, forge(url)), None
        card, path = self.cards[self._n % len(self.cards)]
        return card, path

    def run(self) -> None:
        from station.emulator import store

        dwell = min(0.5, self.interval / 2)
        while not self.stop.is_set():
            card, path = self._next_card()
            self.reader.present(card)
            self.stop.wait(dwell)
            self.reader.remove()
            if path is not None:
                store.save(path, card)
            self.stop.wait(max(self.interval - dwell, 0.02))


# -- the command ----------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    import logging
    import threading

    from station.app import build_station, run_station
    from station.daemon import ReaderSlot, setup_logging
    from station.readers.emulated import EmulatedReader
    from station.settings import KeySettings, Secret, StationSettings, TrackerLink

    def quiet_logging() -> None:
        setup_logging(args.log_format)
        for noisy in ("uvicorn.error", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)

    quiet_logging()
    state_dir: Path = args.dir
    try:
        tracker_settings, engine, password, token = prepare_tracker(state_dir)
    except ImportError as exc:
        print(f"station demo: the tracker is not installed: {exc}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    quiet_logging()  # alembic's env reconfigures logging while migrating
    port = args.port
    if port == 0 or not _port_free(port):
        port = _free_port()

    cards = []
    for uid_hex in DEMO_UIDS:
        path = state_dir / "cards" / f"{uid_hex}.json"
        cards.append((load_or_provision(path, bytes.fromhex(uid_hex), DEMO_ISSUER_KEY,
                                        DEMO_BASE_URL), path))

    with serve_tracker(tracker_settings, engine, port) as url:
        print(f"tracker: {url}/  (login: {OPERATOR} / {password})", flush=True)
        print(f"cards: {len(cards)} emulated Bolt Cards under {state_dir / 'cards'}", flush=True)
        settings = StationSettings(
            station_name=STATION_NAME,
            keys=KeySettings(issuer_key=Secret(DEMO_ISSUER_KEY.hex()), issuer_key_version=1),
            tracker=TrackerLink(url=url, token=Secret(token)),
            allowed_hosts=(DEMO_HOST,),
            outbox_path=state_dir / "station-outbox.sqlite",
            debounce=0.0,
            confirm_timeout=2.0,
        )
        reader = EmulatedReader("Demo reader")
        scheduler = Scheduler(reader, cards, args.interval)
        station = build_station(
            settings, slots=[ReaderSlot("emulated:demo", open=lambda: reader)],
            max_taps=args.taps, on_tap=scheduler.on_tap, poll=0.05,
        )
        feeder = threading.Thread(target=scheduler.run, name="demo-scheduler", daemon=True)
        feeder.start()
        print("station running; Ctrl-C to stop", flush=True)
        try:
            run_station(station, flush_timeout=5)
        finally:
            scheduler.stop.set()
            feeder.join(timeout=5)
    engine.dispose()
    return EXIT_OK
