"""Huge bodies and bad tokens are refused at the door (issue 11, item 2).

A real ``tracker serve`` process: a 64 MB body is refused (413 when its length is declared,
401 when the token is bad, 413 when a good token streams it chunked) within seconds, and the
server's resident memory stays small — the body was never read into memory. Before the fix
FastAPI read and parsed the whole body first and only then checked the token.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tracker_server import free_port
from tracker_testlib import StationCredentials, count_rows, make_station, make_tap

from tracker import migrations
from tracker.db import make_engine

BODY_BYTES = 64 * 1024 * 1024
CHUNK = b"x" * (1024 * 1024)


@dataclass(frozen=True)
class Server:
    port: int
    pid: int
    station: StationCredentials
    engine: object

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    url = f"sqlite:///{tmp_path / 'tracker.sqlite'}"
    engine = make_engine(url)
    migrations.upgrade(engine)
    station = make_station(engine, "till-1")
    port = free_port()
    env = {**os.environ, "TRACKER_SECRET_KEY": "s" * 40, "TRACKER_LOG_LEVEL": "warning"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracker.cli", "--database-url", url, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, "tracker serve exited"
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/openapi.json", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        yield Server(port, proc.pid, station, engine)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
        engine.dispose()


def _post_huge(port: int, token: str, *, chunked: bool) -> tuple[int, float]:
    """POST a 64 MB body to /api/v1/taps from a sender thread; the status line and seconds."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    framing = "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {BODY_BYTES}\r\n"
    head = (
        "POST /api/v1/taps HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n{framing}\r\n"
    )
    started = time.monotonic()

    def send_body() -> None:
        try:
            sock.sendall(head.encode())
            for _ in range(BODY_BYTES // len(CHUNK)):
                if chunked:
                    sock.sendall(f"{len(CHUNK):x}\r\n".encode() + CHUNK + b"\r\n")
                else:
                    sock.sendall(CHUNK)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed: exactly what we want

    sender = threading.Thread(target=send_body, daemon=True)
    sender.start()
    try:
        answer = b""
        while b"\r\n" not in answer:
            data = sock.recv(4096)
            if not data:
                break
            answer += data
        elapsed = time.monotonic() - started
    finally:
        sock.close()
        sender.join(timeout=10)
    status_line = answer.split(b"\r\n", 1)[0].decode()
    assert status_line.startswith("HTTP/1.1 "), answer[:200]
    return int(status_line.split()[1]), elapsed


def test_a_64_mb_body_is_refused_quickly_without_reading_it(server: Server) -> None:
    baseline = server.rss_kb()
    cases = [
        ("bad token, declared length", "not-a-token", False, {401, 413}),
        ("bad token, chunked", "not-a-token", True, {401}),
        ("good token, declared length", server.station.token, False, {413}),
        ("good token, chunked", server.station.token, True, {413}),
    ]
    for name, token, chunked, expected in cases:
        status, seconds = _post_huge(server.port, token, chunked=chunked)
        assert status in expected, (name, status)
        assert seconds < 3, (name, seconds)
    grown_mb = (server.rss_kb() - baseline) / 1024
    assert grown_mb < 24, f"server memory grew by {grown_mb:.0f} MB: the body was read"
    # Nothing was stored and the server still takes taps.
    assert count_rows(server.engine, "tap") == 0  # type: ignore[arg-type]
    ok = httpx.post(
        f"http://127.0.0.1:{server.port}/api/v1/taps",
        json=make_tap(counter=1),
        headers=server.station.headers,
        timeout=10,
    )
    assert ok.status_code == 201, ok.text


def test_the_token_is_checked_before_the_body_is_parsed(server: Server) -> None:
    """A bad token with a broken body is 401 (not 422): the body was never looked at."""
    base = f"http://127.0.0.1:{server.port}"
    for path in ("/api/v1/taps", "/api/v1/claims", "/api/v1/payouts"):
        answer = httpx.post(
            base + path,
            content=b"{not json",
            headers={"Authorization": "Bearer wrong", "content-type": "application/json"},
            timeout=10,
        )
        assert answer.status_code == 401, (path, answer.text)
        missing = httpx.post(base + path, content=b"{not json", timeout=10)
        assert missing.status_code == 401, (path, missing.text)
    small_but_over = httpx.post(
        base + "/api/v1/taps",
        content=b"x" * (2 * 1024 * 1024),
        headers=server.station.headers,
        timeout=10,
    )
    assert small_but_over.status_code == 413
    assert small_but_over.json()["detail"]["reason"] == "body_too_large"
