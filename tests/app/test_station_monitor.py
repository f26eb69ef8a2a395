"""The station's heartbeat (HTTP and direct uplinks into the real tracker), its settings, and
the ``/metrics`` app with its optional token (issue 12)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tracker_live import LiveTracker

from station.monitor.heartbeat import HeartbeatSender
from station.monitor.metrics import MetricSources, TapCounts, create_metrics_app, metrics_registry
from station.monitor.vitals import Readers, Vitals
from station.outbox.health import StationHealth
from station.serve import serve_in_thread
from station.settings import SettingsError, load_settings
from station.uplink.base import Heartbeat, UplinkUnavailable
from station.uplink.http import HttpUplink
from station.uplink.null import NullUplink


def _health(pending: int = 3, dead: int = 1, problem: str | None = None) -> StationHealth:
    return StationHealth(online=problem is None, forwarding=True, pending=pending, dead=dead,
                         delivered=7, problem=problem, problem_since=None)


def _vitals(**kw: object) -> Vitals:
    return Vitals(lambda: _health(**kw), lambda: Readers(present=1, total=2),  # type: ignore[arg-type]
                  version="9.8.7")


def _overview(tracker: LiveTracker) -> dict[str, object]:
    from tracker.db import make_sessionmaker
    from tracker.services import station_health

    with make_sessionmaker(tracker.engine)() as session:
        return {s.name: s for s in station_health.overview(session)}


@pytest.fixture
def tracker(tmp_path: Path):  # type: ignore[no-untyped-def]
    live = LiveTracker(tmp_path)
    live.start()
    yield live
    live.close()


def test_http_heartbeat_reaches_the_tracker(tracker: LiveTracker) -> None:
    token = tracker.add_station("till-hb")
    uplink = HttpUplink(httpx.Client(base_url=tracker.url, timeout=5), token)
    try:
        uplink.send_heartbeat(_vitals().heartbeat(0.5))
        row = _overview(tracker)["till-hb"]
        assert row.state == "online"  # type: ignore[attr-defined]
        beat = row.heartbeat  # type: ignore[attr-defined]
        assert (beat.outbox_pending, beat.outbox_dead, beat.version) == (3, 1, "9.8.7")
        assert (beat.readers_present, beat.readers_total) == (1, 2)
        assert beat.problem == "1 of 2 readers unavailable"
    finally:
        uplink.close()
    bad = HttpUplink(httpx.Client(base_url=tracker.url, timeout=5), "bcst_not-a-token")
    with pytest.raises(UplinkUnavailable, match="STATION_TRACKER_TOKEN"):
        bad.send_heartbeat(_vitals().heartbeat(0.5))
    bad.close()


def test_direct_heartbeat_writes_into_the_tracker_database(tracker: LiveTracker) -> None:
    from station.uplink.direct import DirectUplink

    uplink = DirectUplink(tracker.database_url, "till-local")
    try:
        uplink.send_heartbeat(_vitals(problem="outbox disk full").heartbeat(30))
    finally:
        uplink.close()
    beat = _overview(tracker)["till-local"].heartbeat  # type: ignore[attr-defined]
    assert beat.problem == "outbox disk full" and beat.period_s == 30


def test_a_failed_heartbeat_is_a_debug_line_and_the_next_one_tries_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[Heartbeat] = []
    null = NullUplink()

    def flaky(beat: Heartbeat) -> None:
        calls.append(beat)
        if len(calls) < 3:
            null.send_heartbeat(beat)

    sender = HeartbeatSender(flaky, _vitals().heartbeat, period_s=0.05)
    with caplog.at_level(logging.DEBUG, logger="station.heartbeat"):
        sender.start()
        deadline = time.monotonic() + 10
        while sender.status().sent < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        sender.stop()
    status = sender.status()
    assert status.failed == 2 and status.sent >= 1 and status.last_error is None
    assert {r.levelno for r in caplog.records} == {logging.DEBUG}
    assert "no tracker configured" in caplog.text


def test_heartbeat_and_metrics_settings(tmp_path: Path) -> None:
    cfg = tmp_path / "station.toml"
    cfg.write_text('heartbeat = 5\n[metrics]\nlisten = "127.0.0.1:9108"\ntoken = "scrape-me"\n')
    s = load_settings(cfg, env={})
    assert s.heartbeat == 5 and s.metrics.address() == ("127.0.0.1", 9108)
    assert "scrape-me" not in repr(s)
    assert load_settings(None, env={}).heartbeat == 30 and not load_settings(None, env={}
                                                                             ).metrics.listen
    env = {"STATION_HEARTBEAT": "0", "STATION_METRICS_LISTEN": "[::1]:0"}
    s = load_settings(cfg, env=env)
    assert s.heartbeat == 0 and s.metrics.address() == ("::1", 0)
    for bad in ("heartbeat = 0.01", "heartbeat = 99999", 'heartbeat = "often"',
                'heartbeat = nan', '[metrics]\nlisten = "9108"'):
        cfg.write_text(bad + "\n")
        with pytest.raises(SettingsError) as err:
            load_settings(cfg, env={})
        assert "heartbeat" in str(err.value) or "[metrics] listen" in str(err.value)


def test_metrics_app_needs_its_token_when_one_is_set() -> None:
    sources = MetricSources(
        station_name="till-m", vitals=_vitals(),
        taps=lambda: TapCounts(accepted=5, refused_by_reason={"counter_not_increasing": 2}),
        outbox=lambda: (3, 1),
        claims=lambda: {"paid": 4, "sending": 0},
    )
    url, stop = serve_in_thread(create_metrics_app(metrics_registry(sources), token="t0ken"))
    try:
        assert httpx.get(url + "/metrics").status_code == 401
        wrong = httpx.get(url + "/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "t0ken" not in wrong.text
        answer = httpx.get(url + "/metrics", headers={"Authorization": "Bearer t0ken"})
        assert answer.status_code == 200
        assert httpx.get(url + "/", headers={"Authorization": "Bearer t0ken"}).status_code == 404
    finally:
        stop()
    found = {(s.name, tuple(sorted(s.labels.items()))): s.value
             for f in text_string_to_metric_families(answer.text) for s in f.samples}
    assert found[("station_taps_total", (("outcome", "accepted"),))] == 5
    assert found[("station_taps_total", (("outcome", "refused"),))] == 2
    assert found[("station_taps_refused_total", (("reason", "counter_not_increasing"),))] == 2
    assert found[("station_outbox_pending", ())] == 3
    assert found[("station_outbox_dead", ())] == 1
    assert found[("station_claims", (("state", "paid"),))] == 4
    assert found[("station_info", (("station", "till-m"), ("version", "9.8.7")))] == 1
    assert found[("station_readers_present", ())] == 1


def test_a_metrics_port_in_use_stops_station_run_with_one_line(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        cfg = tmp_path / "station.toml"
        cfg.write_text(f"""
station_name = "busy-port"
outbox = "outbox.sqlite"
[[readers]]
backend = "emulated"
[keys]
issuer_key = "00112233445566778899aabbccddeeff"
[metrics]
listen = "127.0.0.1:{port}"
""")
        proc = subprocess.run([sys.executable, "-m", "station", "run", "--config", str(cfg)],
                              cwd=repo, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 4, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("station run: cannot listen on") and "[metrics] listen" in last
    assert "Traceback" not in proc.stderr
