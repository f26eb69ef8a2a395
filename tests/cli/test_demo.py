"""``station demo --taps 5`` runs the whole product and leaves 5 taps in the tracker database."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_records_the_taps_it_makes(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "station",
            "demo",
            "--dir",
            str(state),
            "--taps",
            "5",
            "--interval",
            "0.05",
            "--port",
            "0",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "http://127.0.0.1:" in proc.stdout
    assert "login: operator / " in proc.stdout
    with sqlite3.connect(state / "tracker.sqlite") as db:
        taps = db.execute("SELECT outcome FROM tap").fetchall()
        stations = db.execute("SELECT name FROM station").fetchall()
    assert len(taps) == 5
    assert ("accepted",) in taps
    assert stations == [("demo-station",)]
    # Three emulated cards keep their state (and counters) for the next run.
    assert len(list((state / "cards").glob("*.json"))) == 3
    # The demo issuer key never shows up in the output.
    assert "de30de30" not in (proc.stdout + proc.stderr).lower()
