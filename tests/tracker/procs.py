"""``tracker serve`` as a real process (``python -m tracker``), for tests that need uvicorn's
own options (forwarded headers) or several processes sharing one database."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
from tracker_server import free_port


@contextlib.contextmanager
def tracker_process(
    db_url: str, secret: str, *extra: str, exit_codes: list[int] | None = None
) -> Iterator[str]:
    """Yield the base URL of ``python -m tracker serve`` on a free port; stop it on exit
    (SIGTERM), appending its exit status to ``exit_codes`` when given."""
    port = free_port()
    env = {**os.environ, "TRACKER_SECRET_KEY": secret, "TRACKER_LOG_LEVEL": "warning"}
    env.pop("FORWARDED_ALLOW_IPS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracker", "--database-url", db_url, "serve", "--port",
         str(port), *extra],
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
                assert time.monotonic() < deadline, "tracker serve did not start"
                time.sleep(0.1)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
            if exit_codes is not None:
                exit_codes.append(code)
        finally:
            if proc.poll() is None:
                proc.kill()
