"""`tracker serve` as operators run it: a real process, one or several workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from tracker_server import free_port
from tracker_testlib import count_rows, make_station, make_tap

from tracker import migrations
from tracker.db import make_engine


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_answers_and_stops_cleanly(tmp_path: Path, workers: int) -> None:
    url = f"sqlite:///{tmp_path / 'tracker.sqlite'}"
    engine = make_engine(url)
    migrations.upgrade(engine)
    station = make_station(engine, "till-1")
    port = free_port()
    env = {**os.environ, "TRACKER_SECRET_KEY": "s" * 40, "TRACKER_LOG_LEVEL": "warning"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tracker.cli",
            "--database-url",
            url,
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                httpx.get(base + "/api/openapi.json", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        # Several connections, so with two workers both get some of them.
        for counter in range(1, 13):
            with httpx.Client(base_url=base, timeout=10) as http:
                answer = http.post(
                    "/api/v1/taps", json=make_tap(counter=counter), headers=station.headers
                )
                assert answer.status_code == 201, answer.text
        assert count_rows(engine, "tap") == 12
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
        engine.dispose()
    # uvicorn re-raises SIGTERM after its graceful shutdown (systemd counts that as clean).
    assert code in (0, -signal.SIGTERM)
