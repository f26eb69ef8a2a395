"""``station sun verify`` as a user runs it: a subprocess, JSON out, exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from station.ntag424.keys import derive_keys
from station.ntag424.sun import build_sun_url, compute_sun

from .station_cli import run_station

REPO = Path(__file__).resolve().parents[2]

# boltcard/boltcard docs/TEST_VECTORS.md
K1 = "0c3b25d92b38ae443229dd59ad34b85d"
K2 = "b45775776cb224c75bcde7ca3704e933"
TAPS = [
    ("4E2E289D945A66BB13377A728884E867", "E19CCB1FED8892CE", 3),
    ("00F48C4F8E386DED06BCDC78FA92E2FE", "66B4826EA4C155B4", 5),
    ("0DBF3C59B59B0638D60B5842A997D4D1", "CC61660C020B4D96", 7),
]
UID = "04996c6a926980"
KEYS = ["--k1", K1, "--k2", K2]


def url(p: str, c: str) -> str:
    return f"lnurlw://card.example.com/ln?p={p}&c={c}"


def station(*args: str, stdin: str | bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return run_station(*args, stdin=stdin, text=False)


def no_traceback(proc: subprocess.CompletedProcess[bytes]) -> None:
    assert b"Traceback" not in proc.stderr
    assert b"Traceback" not in proc.stdout


def test_valid_tap() -> None:
    p, c, counter = TAPS[0]
    proc = station("sun", "verify", url(p, c), *KEYS)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["valid"] is True
    assert (out["uid"], out["counter"], out["picc_data_tag"]) == (UID, counter, "c7")


def test_invalid_tap_exit_1() -> None:
    p, c, _ = TAPS[0]
    proc = station("sun", "verify", url(p, c[:-1] + "F"), *KEYS)
    assert proc.returncode == 1
    assert json.loads(proc.stdout) == {"valid": False, "reason": "cmac mismatch"}


def test_url_from_stdin() -> None:
    p, c, counter = TAPS[1]
    proc = station("sun", "verify", *KEYS, stdin=url(p, c) + "\n")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["counter"] == counter


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        (["sun", "verify", "lnurlw://x/?p=00&c=00", *KEYS], ""),
        (["sun", "verify", "not a url at all", *KEYS], ""),
        (["sun", "verify", url(*TAPS[0][:2]), "--k1", K1], ""),
        (["sun", "verify", url(*TAPS[0][:2]), "--k1", "zz" * 16, "--k2", K2], ""),
        (["sun", "verify", url(*TAPS[0][:2])], ""),
        (["sun", "verify", *KEYS], ""),
        (["sun", "verify", *KEYS], "\xff\xfe garbage\x00\n"),
        (["sun", "verify", url(*TAPS[0][:2]), "--issuer-key", "00" * 16, "--version", "x"], ""),
        (["sun", "verify", url(*TAPS[0][:2]), "--keys", "/nonexistent/keys.json"], ""),
        (["sun", "verify", "--bogus-option"], ""),
    ],
)
def test_bad_input_exit_2_one_line(args: list[str], stdin: str) -> None:
    proc = station(*args, stdin=stdin)
    assert proc.returncode == 2
    no_traceback(proc)
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines  # one error line, no usage block, no traceback
    assert lines[0].startswith(("station sun verify: error: ", "station: error: ")), lines
    assert "zz" * 16 not in proc.stderr.decode()


def test_issuer_key_and_keys_file(tmp_path: Path) -> None:
    issuer = bytes.fromhex("00000000000000000000000000000001")
    uid = bytes.fromhex("04a39493cc8680")
    keys = derive_keys(issuer, uid, 3)
    tap = build_sun_url("lnurlw://x/ln", compute_sun(keys.k1, keys.k2, uid, 12))
    proc = station("sun", "verify", tap, "--issuer-key", issuer.hex(), "--version", "3")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["uid"], out["counter"], out["key_source"]) == (uid.hex(), 12, "issuer")
    # Version 1 keys do not match a version 3 card.
    assert station("sun", "verify", tap, "--issuer-key", issuer.hex()).returncode == 1

    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"cards": [{"uid": uid.hex(), "card_name": "c", **keys.as_hex()}]}))
    proc = station("sun", "verify", tap, "--keys", str(path))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["card_name"] == "c"


def test_issuer_key_version_0_is_not_replaced_by_the_default() -> None:
    """``--version 0`` is a valid uint32 key version (``keys derive`` accepts it); it used to be
    read as "no version" and silently replaced by version 1."""
    issuer = bytes.fromhex("00000000000000000000000000000001")
    uid = bytes.fromhex("04a39493cc8680")
    keys = derive_keys(issuer, uid, 0)
    assert keys != derive_keys(issuer, uid, 1)
    tap = build_sun_url("lnurlw://x/ln", compute_sun(keys.k1, keys.k2, uid, 5))
    proc = station("sun", "verify", tap, "--issuer-key", issuer.hex(), "--version", "0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["counter"] == 5


def test_batch_in_order_with_bad_lines() -> None:
    lines = [
        url(*TAPS[0][:2]),
        "garbage",
        url(TAPS[1][0], TAPS[1][1][:-1] + "0"),
        "",
        url(*TAPS[2][:2]),
        "https://h/?e=" + TAPS[1][0] + "&c=" + TAPS[1][1] + "&extra=1",
    ]
    proc = station("sun", "verify", "--batch", *KEYS, stdin="\r\n".join(lines))
    assert proc.returncode == 1
    no_traceback(proc)
    out = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert len(out) == len(lines)
    assert out[0] == {"valid": True, "uid": UID, "counter": 3}
    assert out[1]["valid"] is False and out[1]["malformed"] is True
    assert out[2] == {"valid": False, "reason": "cmac mismatch"}
    assert out[3]["valid"] is False
    assert out[4] == {"valid": True, "uid": UID, "counter": 7}
    assert out[5] == {"valid": True, "uid": UID, "counter": 5}


def test_batch_many_lines_all_valid() -> None:
    n = 5000
    stdin = "".join(url(*TAPS[i % 3][:2]) + "\n" for i in range(n))
    proc = station("sun", "verify", "--batch", *KEYS, stdin=stdin)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode().splitlines()
    assert len(out) == n
    assert [json.loads(line)["counter"] for line in out[:6]] == [3, 5, 7, 3, 5, 7]
    assert json.loads(out[-1])["counter"] == TAPS[(n - 1) % 3][2]


def test_batch_streams_line_by_line() -> None:
    """An answer comes back before stdin is closed: the batch mode does not wait for EOF."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "station", "sun", "verify", "--batch", *KEYS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write((url(*TAPS[0][:2]) + "\n").encode())
        proc.stdin.flush()
        first = proc.stdout.readline()
        assert json.loads(first)["counter"] == 3
        proc.stdin.write((url(*TAPS[1][:2]) + "\n").encode())
        proc.stdin.close()
        assert json.loads(proc.stdout.readline())["counter"] == 5
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()


def test_garbage_bytes_never_traceback() -> None:
    junk = bytes(range(256)) * 4 + b"\n?p=&c=\n\x00\x00\n" + ("?" * 60).encode()
    proc = station("sun", "verify", "--batch", *KEYS, stdin=junk)
    no_traceback(proc)
    assert proc.returncode == 1
    for line in proc.stdout.decode().splitlines():
        assert json.loads(line)["valid"] is False
