"""Every command README.md shows runs as shown.

The commands are read out of README.md's ```sh blocks, not copied here, so the README cannot
drift from what works. Each block runs top to bottom in its own empty directory (a later line
may use a file an earlier one made, as a reader pasting them would), through ``bash`` with the
project's ``.venv/bin`` first on PATH, HOME in the temp directory and no ``TRACKER_*`` /
``STATION_*`` settings from the caller. A command passes with exit status 0 unless
:data:`EXIT_CODES` names the one the README documents for it.

:data:`NOT_RUN` is the short list of commands this test cannot run here, each with the reason
and the test that covers it instead.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent

#: Command prefix → why it is not run here (and where it is run instead).
NOT_RUN: dict[str, str] = {
    "make demo": "runs until stopped (tests/cli/test_demo.py runs the demo)",
    "make test": "is this test suite",
    "station run ": "a daemon that needs readers and a station.toml (tests/cli/test_run_cli.py)",
    "station charge 2100 --memo": "waits for a tap on a PC/SC reader and needs an invoice source "
    "(tests/e2e/test_charge_pcsc.py)",
    "station charge 2100 --station": "arms a charge on a station daemon that must be running "
    "on 127.0.0.1:8090 (tests/cli/test_charge_remote_cli.py)",
    "tracker reconcile": "polls the issuer at https://btcpay.example, and tests make no external "
    "requests (tests/tracker/test_btcpay_payouts.py polls a local one)",
}

#: Command prefix → the exit statuses the README documents for it.
EXIT_CODES: dict[str, set[int]] = {
    # 0 with a reader attached, 4 ("environment problem") on a machine without one.
    "station readers": {0, 4},
}

#: Commands that serve until stopped: started, asked once over HTTP, then stopped.
SERVERS = ("tracker serve",)


def sh_blocks() -> list[list[str]]:
    """The commands of each ```sh block (continuation lines joined, comment lines dropped)."""
    blocks = []
    for body in re.findall(r"^```sh\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M):
        commands: list[str] = []
        pending = ""
        for line in body.splitlines():
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            pending += line + "\n"
            if not re.search(r"\\\s*$", line.split("  #")[0]):
                commands.append(pending.strip())
                pending = ""
        blocks.append(commands)
    return blocks


def _prefix(command: str, table: dict[str, object] | tuple[str, ...]) -> str | None:
    return next((p for p in table if command.startswith(p)), None)


def _env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRACKER_", "STATION_", "XDG_"))
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(home)
    return env


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(command: str, cwd: Path, env: dict[str, str]) -> None:
    """Start a server command as written, wait until it answers over HTTP, stop it.

    Its port comes from TRACKER_PORT (a free one), so the README's default 8080 is not taken
    from another program on this machine."""
    port = _free_port()
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {command}"],
        cwd=cwd,
        env={**env, "TRACKER_PORT": str(port), "TRACKER_LOG_LEVEL": "warning"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"{command!r} exited {proc.returncode}: {proc.stdout}"
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/login", timeout=2)
                assert answer.status_code == 200, answer.text
                return
            except httpx.TransportError:
                assert time.monotonic() < deadline, f"{command!r} did not answer in 30 s"
                time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


BLOCKS = sh_blocks()


def test_the_readme_has_the_blocks_this_test_expects() -> None:
    commands = [c for block in BLOCKS for c in block]
    assert len(BLOCKS) >= 3 and len(commands) >= 20
    # Every entry of the lists above still names a README command (no stale excuses).
    for table in (NOT_RUN, EXIT_CODES, SERVERS):
        for prefix in table:
            assert any(c.startswith(prefix) for c in commands), prefix
    # A placeholder nobody can paste is not an example; these would be.
    for command in commands:
        assert not re.search(r"\bHEX\b|\[--", command), command


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=lambda i: f"block{i + 1}")
def test_readme_block_runs_as_shown(index: int, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = _env(home)
    for command in BLOCKS[index]:
        if _prefix(command, NOT_RUN):
            continue
        if _prefix(command, SERVERS):
            _serve(command, tmp_path, env)
            continue
        answer = subprocess.run(
            ["bash", "-c", command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        expected = EXIT_CODES.get(_prefix(command, EXIT_CODES) or "", {0})
        assert answer.returncode in expected, (command, answer.stdout, answer.stderr)
