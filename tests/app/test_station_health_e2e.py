"""A real ``station run`` process (nfcpy's udp reader, our card on the other end) against the
real tracker on 127.0.0.1: the tracker sees it online from its heartbeats, sees its outbox
grow while the tracker refuses taps, calls it offline while the tracker is down and after the
station stops; the station's own ``/metrics``, scraped over HTTP, counts the taps made
(issue 12)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from station_rig import wait_until
from tracker_live import LiveTracker, free_port

from station.serve import serve_in_thread

pytest.importorskip("nfc")

REPO = Path(__file__).resolve().parents[2]
ISSUER = bytes.fromhex("00112233445566778899aabbccddeeff")
UID = bytes.fromhex("04E2E0000000C3")
PERIOD = 0.5
METRICS_TOKEN = "scrape-token-for-the-test"


class RefuseTaps:
    """The tracker app, answering 503 + Retry-After to tap posts while ``refusing`` (what it
    answers when its database is busy); heartbeats and everything else go through."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.refusing = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.refusing and scope["type"] == "http" and scope["path"].startswith(
                "/api/v1/taps"):
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"retry-after", b"1")]})
            await send({"type": "http.response.body", "body": b'{"detail": "busy"}'})
            return
        await self.app(scope, receive, send)


class Tracker:
    """The real tracker on a fixed port, which the test can take down and bring back."""

    def __init__(self, tmp: Path) -> None:
        self.live = LiveTracker(tmp)
        self.port = free_port()
        self.gate: RefuseTaps | None = None
        self.refusing = False
        self._stop: Callable[[], None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        from tracker.web.app import create_app

        self.gate = RefuseTaps(create_app(self.live.settings, engine=self.live.engine))
        self.gate.refusing = self.refusing
        _url, self._stop = serve_in_thread(self.gate, "127.0.0.1", self.port, lifespan="on")

    def down(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None

    def refuse_taps(self, on: bool) -> None:
        self.refusing = on
        assert self.gate is not None
        self.gate.refusing = on

    def station(self, name: str) -> Any:
        """The station as the stations page and API show it (the one public shape)."""
        from tracker.db import make_sessionmaker
        from tracker.services import station_health

        with make_sessionmaker(self.live.engine)() as session:
            return next(s for s in station_health.overview(session) if s.name == name)

    def close(self) -> None:
        self.down()
        self.live.engine.dispose()


class StationProcess:
    """``python -m station run --config FILE``; its JSON log lines collected in a file."""

    def __init__(self, config: Path, log: Path) -> None:
        self.log = log
        self._file = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "station", "run", "--config", str(config)], cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=self._file, stderr=subprocess.STDOUT,
        )

    def event(self, name: str, timeout: float = 30) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        def seen() -> bool:
            assert self.proc.poll() is None, self.log.read_text()
            for line in self.log.read_text(errors="replace").splitlines():
                if line.startswith("{") and json.loads(line).get("event") == name:
                    found.append(json.loads(line))
            return bool(found)

        assert wait_until(seen, timeout, step=0.05), f"no {name}:\n{self.log.read_text()}"
        return found[0]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            self._file.close()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
                       timeout=5)
    assert answer.status_code == 200, answer.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(answer.text) for s in f.samples}


def accepted(url: str) -> float:
    return scrape(url)[("station_taps_total", (("outcome", "accepted"),))]


@pytest.mark.slow
def test_station_run_health_seen_by_the_tracker_and_its_own_metrics(tmp_path: Path) -> None:
    from station.cli.demo_run import load_or_provision
    from station.emulator.bridges.nfc_udp import NfcUdpCard

    tracker = Tracker(tmp_path)
    tracker.up()
    token = tracker.live.add_station("till-hb")
    udp = free_port()
    card = load_or_provision(tmp_path / "card.json", UID, ISSUER, "lnurlw://pay.example.com/ln")
    config = tmp_path / "station.toml"
    config.write_text(f"""
station_name = "till-hb"
outbox = "outbox.sqlite"
log_format = "json"
debounce = 0.05
heartbeat = {PERIOD}
[[readers]]
backend = "nfcpy"
name = "udp:127.0.0.1:{udp}"
[keys]
issuer_key = "{ISSUER.hex()}"
[tracker]
url = "{tracker.url}"
token = "{token}"
[metrics]
listen = "127.0.0.1:0"
token = "{METRICS_TOKEN}"
""")
    assert tracker.station("till-hb").state == "never"
    station = StationProcess(config, tmp_path / "station.log")
    radio = NfcUdpCard(port=udp)
    made = 0

    def tap() -> None:
        """One tap: the card stays until the station counted it, then leaves for good."""
        nonlocal made
        want = made + 1
        for _attempt in range(4):
            radio.insert(card)
            counted = wait_until(lambda: accepted(metrics) >= want, 10, step=0.05)
            radio.remove()
            time.sleep(0.6)  # the reader polls every 0.25 s: let it see the field empty
            if counted:
                made += 1
                return
        raise AssertionError(f"the station never counted tap {made + 1}")

    try:
        metrics = station.event("metrics_listening")["url"]
        assert httpx.get(metrics + "/metrics").status_code == 401  # the token is required
        # online, from the heartbeats alone (no tap yet)
        assert wait_until(lambda: tracker.station("till-hb").state == "online", 15, step=0.1)
        beat = tracker.station("till-hb").heartbeat
        assert beat.readers_total == 1 and beat.outbox_pending == 0 and beat.outbox_dead == 0
        assert beat.version and beat.period_s == PERIOD

        for _ in range(3):
            tap()
        assert wait_until(lambda: len(tracker.live.taps()) == 3, 15)

        # the tracker refuses taps: they wait in the outbox, and the heartbeat says how many
        tracker.refuse_taps(True)
        tap()
        tap()
        assert wait_until(
            lambda: tracker.station("till-hb").heartbeat.outbox_pending == 2, 15, step=0.1
        ), tracker.station("till-hb")
        assert tracker.station("till-hb").state == "online"
        assert scrape(metrics)[("station_outbox_pending", ())] == 2
        assert len(tracker.live.taps()) == 3

        # the tracker is down: the station keeps counting, the tracker will call it offline
        tracker.down()
        tap()
        assert wait_until(lambda: scrape(metrics)[("station_outbox_pending", ())] == 3, 15)
        down = scrape(metrics)
        assert down[("station_heartbeats_total", (("result", "failed"),))] >= 1
        assert wait_until(lambda: scrape(metrics)[("station_heartbeat_ok", ())] == 0, 10)
        # no heartbeat for 3 periods: offline
        assert wait_until(lambda: tracker.station("till-hb").state == "offline", 10, step=0.1)

        # back, taking taps again: online, the outbox drains, every tap stored once
        tracker.refuse_taps(False)
        tracker.up()
        assert wait_until(lambda: len(tracker.live.taps()) == 6, 30)
        assert wait_until(
            lambda: tracker.station("till-hb").heartbeat.outbox_pending == 0, 15, step=0.1)
        assert tracker.station("till-hb").state == "online"

        found = scrape(metrics)
        stored = tracker.live.taps()
        assert made == 6
        assert found[("station_taps_total", (("outcome", "accepted"),))] == 6
        assert found[("station_taps_total", (("outcome", "refused"),))] == 0
        assert [t["outcome"] for t in stored] == ["accepted"] * 6
        assert found[("station_outbox_pending", ())] == 0
        assert found[("station_outbox_dead", ())] == 0
        assert found[("station_forwarder_online", ())] == 1
        assert found[("station_readers_present", ())] == 1
        assert found[("station_claims", (("state", "paid"),))] == 0
        assert found[("station_heartbeats_total", (("result", "ok"),))] >= 4
    finally:
        radio.close()
        code = station.stop()
    assert code == 0, station.log.read_text()
    # the station stopped: offline once three periods pass without a heartbeat
    assert wait_until(lambda: tracker.station("till-hb").state == "offline", 10, step=0.1)
    log = station.log.read_text()
    assert token not in log and METRICS_TOKEN not in log and ISSUER.hex() not in log
    tracker.close()
