"""``station keys derive`` as a user runs it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from published import VECTORS

from .station_cli import run_station

REPO = Path(__file__).resolve().parents[2]
VECTOR: dict[str, Any] = next(v for v in VECTORS if v["kind"] == "deterministic_keys")


def station(*args: str) -> subprocess.CompletedProcess[str]:
    return run_station(*args)


def test_derive_matches_published_vector() -> None:
    inp, exp = VECTOR["inputs"], VECTOR["expected"]
    proc = station(
        "keys",
        "derive",
        "--issuer-key",
        inp["issuer_key"],
        "--uid",
        inp["uid"],
        "--version",
        str(inp["version"]),
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for name in ("k0", "k1", "k2", "k3", "k4", "id"):
        assert out[name] == exp[name]
    assert (out["uid"], out["version"]) == (inp["uid"], inp["version"])


def test_derive_formats() -> None:
    inp, exp = VECTOR["inputs"], VECTOR["expected"]
    base = ["keys", "derive", "--issuer-key", inp["issuer_key"], "--uid", inp["uid"]]
    proc = station(*base, "--format", "new-bolt-card-response", "--lnurlw", "lnurlw://x/ln")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["protocol_name"] == "new_bolt_card_response"
    assert (out["LNURLW"], out["K2"]) == ("lnurlw://x/ln", exp["k2"])
    wipe = json.loads(station(*base, "--format", "wipe").stdout)
    assert wipe["action"] == "wipe" and wipe["k0"] == exp["k0"]


@pytest.mark.parametrize(
    "args",
    [
        ["--issuer-key", "00" * 15, "--uid", "04a39493cc8680"],
        ["--issuer-key", "secretsecretsecretsecretsecretzz", "--uid", "04a39493cc8680"],
        ["--issuer-key", "00" * 16, "--uid", "04a394"],
        ["--issuer-key", "00" * 16, "--uid", "04a39493cc8680", "--version", "-1"],
        [
            "--issuer-key",
            "00" * 16,
            "--uid",
            "04a39493cc8680",
            "--format",
            "new-bolt-card-response",
        ],
        ["--uid", "04a39493cc8680"],
    ],
)
def test_derive_bad_input(args: list[str]) -> None:
    proc = station("keys", "derive", *args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "secretsecret" not in proc.stderr
