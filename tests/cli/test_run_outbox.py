"""``station run`` on an outbox file that is not ours: one line naming the file and what to
do, exit 4 — unless told to start fresh, which sets the file aside and keeps a good one."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from station.outbox.outbox import Outbox
from station.uplink.records import TapRecord

from .station_cli import run_station

REPO = Path(__file__).resolve().parents[2]
ISSUER = "00112233445566778899aabbccddeeff"


def config(tmp_path: Path) -> Path:
    cfg = tmp_path / "station.toml"
    cfg.write_text(f"""
station_name = "outbox-test"
outbox = "outbox.sqlite"
[[readers]]
backend = "emulated"
[keys]
issuer_key = "{ISSUER}"
""")
    return cfg


def not_a_database(path: Path) -> None:
    path.write_bytes(b"this is not SQLite at all\n" * 400)


def other_database(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, memo TEXT)")
        db.execute("INSERT INTO invoices(memo) VALUES ('x')")


def zero_length(path: Path) -> None:
    path.write_bytes(b"")


def damaged(path: Path) -> None:
    box = Outbox(path)
    for n in range(1, 400):
        box.append(tap(n))
    box.close()
    data = bytearray(path.read_bytes())
    data[4096 * 2: 4096 * 4] = b"\xa5" * (4096 * 2)  # scribble over b-tree pages
    path.write_bytes(bytes(data))


def tap(counter: int) -> TapRecord:
    return TapRecord(f"04AABBCCDDEE01:{counter}", "04AABBCCDDEE01", None, counter,
                     "2026-01-01T00:00:00+00:00", "accepted", None, "pay.example.com")


@pytest.mark.parametrize("spoil", [zero_length, not_a_database, other_database, damaged])
def test_an_outbox_that_is_not_ours_stops_the_start_with_one_line(tmp_path: Path, spoil) -> None:  # type: ignore[no-untyped-def]
    outbox = tmp_path / "outbox.sqlite"
    spoil(outbox)
    before = outbox.read_bytes()
    proc = run_station("run", "--config", str(config(tmp_path)), timeout=60)
    assert proc.returncode == 4, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert str(outbox) in lines[0] and "--fresh-outbox" in lines[0]
    assert outbox.read_bytes() == before  # nothing was changed


def start_and_stop(tmp_path: Path, *extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATION_")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen(
        [sys.executable, "-m", "station", "run", "--config", str(config(tmp_path)), *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stderr is not None
    lines = []
    deadline = time.monotonic() + 30
    for line in proc.stderr:
        lines.append(line)
        if "watching" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=30)
    text = "".join(lines) + err
    assert proc.returncode == 0, text
    return text


@pytest.mark.parametrize("spoil", [zero_length, not_a_database])
def test_fresh_outbox_sets_the_bad_file_aside_and_starts(tmp_path: Path, spoil) -> None:  # type: ignore[no-untyped-def]
    outbox = tmp_path / "outbox.sqlite"
    spoil(outbox)
    before = outbox.read_bytes()
    log = start_and_stop(tmp_path, "--fresh-outbox")
    assert "started an empty outbox" in log
    aside = list(tmp_path.glob("outbox.sqlite.unusable-*"))
    assert [p.read_bytes() for p in aside if not p.name.endswith(("-wal", "-shm"))] == [before]
    assert Outbox(outbox).counts() == {}  # a new, good outbox


def test_fresh_outbox_keeps_a_good_outbox_and_its_replay_memory(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.sqlite"
    box = Outbox(outbox)
    box.append(tap(41))
    box.close()
    start_and_stop(tmp_path, "--fresh-outbox")
    again = Outbox(outbox)
    assert again.last_counter("04AABBCCDDEE01") == 41 and again.pending_count() == 1
    assert not list(tmp_path.glob("outbox.sqlite.unusable-*"))
