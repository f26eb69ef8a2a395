"""The tracker benchmarks' rig: throwaway databases, `tracker serve` in a subprocess, stations
with tokens, and the CPU and memory of the processes measured from /proc.

Shared by ``bench/tracker.py`` (queries, HTTP ingest, export) and ``bench/tracker_batch.py``;
the leading underscore keeps ``python -m bench`` from taking it for a benchmark.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tracker.db import make_engine, make_sessionmaker
from tracker.services import stations as station_service


class Unavailable(RuntimeError):
    pass


@contextlib.contextmanager
def database(backend: str, workdir: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'bench.sqlite'}"
        return
    import psycopg

    user = None
    for candidate in ("postgres", "root"):
        try:
            with psycopg.connect(
                host="127.0.0.1", user=candidate, dbname="postgres", connect_timeout=3
            ):
                user = candidate
                break
        except psycopg.Error:
            continue
    if user is None:
        raise Unavailable("PostgreSQL on 127.0.0.1:5432 is not reachable")
    name = f"tracker_bench_{secrets.token_hex(4)}"
    with psycopg.connect(host="127.0.0.1", user=user, dbname="postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    try:
        yield f"postgresql+psycopg://{user}@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(host="127.0.0.1", user=user, dbname="postgres", autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(url: str, workdir: Path, *, workers: int = 1) -> Iterator[tuple[str, int]]:
    """`tracker serve` in a subprocess; yields (base URL, pid of the process serving)."""
    import httpx

    port = _free_port()
    env = {
        **os.environ,
        "TRACKER_DATABASE_URL": url,
        "TRACKER_SECRET_KEY": secrets.token_urlsafe(32),
        "TRACKER_LOG_LEVEL": "warning",
    }
    cmd = [
        sys.executable,
        "-m",
        "tracker.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    log_file = open(workdir / f"server-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited; see {log_file.name}")
            try:
                httpx.get(base + "/api/openapi.json", timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not start within 60 s") from None
                time.sleep(0.1)
        yield base, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log_file.close()


def _make_stations(url: str, count: int) -> list[str]:
    engine = make_engine(url)
    tokens = []
    with make_sessionmaker(engine)() as s:
        for i in range(count):
            _, token = station_service.create_station(s, name=f"bench-{secrets.token_hex(3)}-{i}")
            tokens.append(token)
    engine.dispose()
    return tokens


def _cpu_seconds(pid: int, *, children: bool = False) -> float:
    """user+system CPU of a process (and, for a multi-worker server, of its child workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    if children:
        with contextlib.suppress(OSError):
            pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    total = 0.0
    for p in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _postgres_cpu_seconds(url: str | None = None) -> float:
    """user+system CPU of the local ``postgres`` processes (0 where /proc does not show them):
    with ``url``, only the backends connected to that database (their process title names
    it), so other users of the same server (tests running beside the bench) do not count.
    The shared background processes (WAL writer, checkpointer) are left out then.

    PostgreSQL shares the machine's cores with the server and the load generator, so its CPU
    per tap is part of what an ingest figure costs; this reads it from outside the database.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    dbname = f" {url.rsplit('/', 1)[1]} ".encode() if url else None
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (proc / "stat").read_text()
            if not stat.split(" (", 1)[1].startswith("postgres)"):
                continue
            if dbname is not None and dbname not in (proc / "cmdline").read_bytes():
                continue
            fields = stat.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _rss_mb(pid: int, field: str = "VmHWM") -> float:
    """``VmHWM`` (peak resident set) or ``VmRSS`` (current) of a process, in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    for line in status.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not available")


def _http_impl() -> str:
    """Which HTTP stack uvicorn picks ("auto"): httptools+uvloop when installed, else h11."""
    import importlib.util

    fast = [m for m in ("httptools", "uvloop") if importlib.util.find_spec(m) is not None]
    return "+".join(fast) if fast else "h11 (pure Python)"
