"""Run the ``station`` command line the way a user does: a subprocess, output captured.

One runner for the CLI tests, so each checks exit codes and output the same way and none
depends on the developer's ``STATION_*`` environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def run_station(
    *args: str, stdin: str | bytes | None = None, text: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[Any]:
    """``python -m station ARGS``; ``text=False`` keeps stdin/stdout/stderr as bytes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATION_")}
    env["PYTHONPATH"] = str(REPO)
    data: str | bytes | None = stdin
    if not text and isinstance(stdin, str):
        data = stdin.encode()
    return subprocess.run(
        [sys.executable, "-m", "station", *args],
        input=data,
        capture_output=True,
        text=text,
        cwd=REPO,
        timeout=timeout,
        check=False,
        env=env,
    )
