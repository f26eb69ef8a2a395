"""Shared option parsing of the ``station`` subcommands, and the cheap start-up it allows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from station.cli.options import DEFAULT_KEY_VERSION, BadInput, hex_arg, key_arg, version_arg
from station.ntag424.keys import DEFAULT_VERSION

REPO = Path(__file__).resolve().parents[2]
SECRET = "c0ffee" * 5 + "00"  # 32 hex digits


def test_key_arg_accepts_exactly_32_hex_digits_either_case() -> None:
    assert key_arg(SECRET.upper(), "--k1") == bytes.fromhex(SECRET)
    assert key_arg(f"  {SECRET}\n", "--k1") == bytes.fromhex(SECRET)


@pytest.mark.parametrize(
    "text",
    [SECRET[:-2], SECRET + "00", SECRET[:-1] + "g", SECRET[:16] + " " + SECRET[16:-2], ""],
)
def test_bad_key_is_refused_without_echoing_it(text: str) -> None:
    with pytest.raises(BadInput) as err:
        key_arg(text, "--issuer-key")
    assert str(err.value) == "--issuer-key must be 32 hex digits"


def test_uid_size_is_the_callers() -> None:
    assert hex_arg("04a39493cc8680", "--uid", 7) == bytes.fromhex("04a39493cc8680")
    with pytest.raises(BadInput, match="--uid must be 14 hex digits"):
        hex_arg("04a39493cc86", "--uid", 7)


@pytest.mark.parametrize(
    ("text", "expected"), [(None, None), ("0", 0), ("7", 7), ("4294967295", 0xFFFFFFFF)]
)
def test_version_arg(text: str | None, expected: int | None) -> None:
    assert version_arg(text) == expected


@pytest.mark.parametrize("text", ["-1", "x", "4294967296", "1.0", ""])
def test_bad_version(text: str) -> None:
    with pytest.raises(BadInput, match="--version"):
        version_arg(text)


def test_default_key_version_is_the_protocol_cores() -> None:
    assert DEFAULT_KEY_VERSION == DEFAULT_VERSION


def test_building_the_parser_imports_no_protocol_core_or_tracker() -> None:
    """Registering every subcommand stays cheap: the NTAG 424 core, the emulated card, the card
    tools, the daemon and the tracker are imported by the handler that needs them."""
    code = (
        "import json, sys; from station.cli import build_parser; build_parser(); "
        "print(json.dumps(sorted(sys.modules)))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    loaded = set(json.loads(proc.stdout))
    heavy = {
        "station.emulator.card",
        "station.ntag424.keys",
        "station.ntag424.sun",
        "station.cardtools",
        "station.daemon",
        "station.pipeline",
        "cryptography",
        "tracker",
        "httpx",
        "socket",
    }
    assert loaded & heavy == set()
    # and every subcommand is still registered
    help_text = subprocess.run(
        [sys.executable, "-m", "station", "--help"], capture_output=True, text=True, cwd=REPO,
        check=True,
    ).stdout
    for command in ("sun", "keys", "card", "readers", "run", "read", "demo"):
        assert command in help_text
