"""``station read`` and ``station run`` from the command line: JSON out, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .station_cli import run_station

REPO = Path(__file__).resolve().parents[2]
ISSUER = bytes.fromhex("00112233445566778899aabbccddeeff")
UID = bytes.fromhex("04A1B2C3D4E5F6")


def station(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run_station(*args, timeout=timeout)


@pytest.fixture(scope="module")
def card_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from station.cli.demo_run import load_or_provision

    path = tmp_path_factory.mktemp("cards") / "card.json"
    load_or_provision(path, UID, ISSUER, "lnurlw://pay.example.com/ln")
    return path


def test_read_a_valid_tap_and_the_counter_moves_on(card_state: Path) -> None:
    from station.ntag424.keys import derive_keys

    keys = derive_keys(ISSUER, UID, 1)
    counters = []
    for key_args in (
        ["--issuer-key", ISSUER.hex()],
        ["--k1", keys.k1.hex(), "--k2", keys.k2.hex()],
    ):
        proc = station(
            "read",
            "--backend",
            "emulated",
            "--card-state",
            str(card_state),
            *key_args,
            "--timeout",
            "2",
        )
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        assert out["valid"] is True and out["reason"] is None
        assert out["uid"] == UID.hex().upper()
        assert out["apdus"] == 3
        assert out["url"].startswith("lnurlw://pay.example.com/ln?p=")
        assert isinstance(out["ms"], float)
        counters.append(out["counter"])
    assert counters[1] == counters[0] + 1  # the card state was saved between the two reads


def test_read_with_the_wrong_keys_is_invalid(card_state: Path) -> None:
    proc = station(
        "read",
        "--backend",
        "emulated",
        "--card-state",
        str(card_state),
        "--k1",
        "11" * 16,
        "--k2",
        "22" * 16,
        "--timeout",
        "2",
    )
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert out["valid"] is False and out["reason"]
    assert "11" * 16 not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--k1", "zz" * 16, "--k2", "00" * 16],
        ["--k1", "00" * 16],
        ["--issuer-key", "0011"],
        [],
        ["--keys", "/nonexistent/keys.json"],
    ],
)
def test_read_bad_input_is_exit_2_without_traceback(args: list[str]) -> None:
    proc = station("read", "--backend", "emulated", *args, "--timeout", "0.1")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0


def test_read_no_card_within_timeout_is_exit_3() -> None:
    proc = station(
        "read", "--backend", "emulated", "--issuer-key", ISSUER.hex(), "--timeout", "0.2"
    )
    assert proc.returncode == 3
    assert "no card" in proc.stderr


def test_run_with_a_broken_config_is_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "station.toml"
    cfg.write_text('log_format = "xml"\n')
    proc = station("run", "--config", str(cfg))
    assert proc.returncode == 2
    assert "log_format" in proc.stderr and "Traceback" not in proc.stderr


def test_run_stops_on_sigterm_with_exit_0(tmp_path: Path) -> None:
    import signal
    import time

    cfg = tmp_path / "station.toml"
    cfg.write_text(f"""
station_name = "cli-test"
outbox = "outbox.sqlite"
log_format = "json"
[[readers]]
backend = "emulated"
[keys]
issuer_key = "{ISSUER.hex()}"
""")
    proc = subprocess.Popen(
        [sys.executable, "-m", "station", "run", "--config", str(cfg)], cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stderr is not None
    lines = []
    deadline = time.monotonic() + 30
    for line in proc.stderr:  # wait for the start-up line before signalling
        lines.append(line)
        if "watching" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, "".join(lines) + err
    log = [json.loads(x) for x in ("".join(lines) + err).splitlines() if x.startswith("{")]
    assert any("watching emulated" in x["msg"] for x in log)
    assert any(x["msg"].startswith("stopped") for x in log)
    assert ISSUER.hex() not in "".join(lines) + err
    assert (tmp_path / "outbox.sqlite").exists()


def test_read_from_a_reader_that_does_not_exist_is_exit_4() -> None:
    pytest.importorskip("nfc")
    proc = station("read", "--backend", "nfcpy", "--reader", "usb:0000:0000",
                   "--issuer-key", ISSUER.hex(), "--timeout", "1")
    assert proc.returncode == 4
    assert "reader problem" in proc.stderr and "Traceback" not in proc.stderr
