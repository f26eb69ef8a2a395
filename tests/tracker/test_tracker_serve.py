"""`tracker serve` as operators run it: a real process, one or several workers."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest
from procs import tracker_process
from tracker_testlib import count_rows, make_station, make_tap

from tracker import migrations
from tracker.db import make_engine


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_answers_and_stops_cleanly(tmp_path: Path, workers: int) -> None:
    url = f"sqlite:///{tmp_path / 'tracker.sqlite'}"
    engine = make_engine(url)
    migrations.upgrade(engine)
    station = make_station(engine, "till-1")
    codes: list[int] = []
    try:
        with tracker_process(url, "s" * 40, "--workers", str(workers), exit_codes=codes) as base:
            # Several connections, so with two workers both get some of them.
            for counter in range(1, 13):
                with httpx.Client(base_url=base, timeout=10) as http:
                    answer = http.post(
                        "/api/v1/taps", json=make_tap(counter=counter), headers=station.headers
                    )
                    assert answer.status_code == 201, answer.text
            assert count_rows(engine, "tap") == 12
    finally:
        engine.dispose()
    code = codes[0]
    # uvicorn re-raises SIGTERM after its graceful shutdown (systemd counts that as clean).
    assert code in (0, -signal.SIGTERM)
