"""Station health benchmark: what heartbeats and health reads cost, on both sides.

    python -m bench stations [--quick]

1. Tracker, heartbeat ingest: ``tracker serve`` (SQLite, its own process) with 1,000
   stations; 8 concurrent clients post heartbeats (``POST /api/v1/stations/heartbeat``, a
   different station each time). Reported: heartbeats/s and the tracker process's CPU time
   per heartbeat (from ``/proc``, so the load generator's CPU is not counted), and what 1,000
   stations at the default 30 s period would cost of one core.
2. Tracker, reads with 1,000 reporting stations: ``GET /metrics`` (scrape token) and
   ``GET /api/v1/stations`` (operator token) latencies.
3. Station: one heartbeat snapshot (``Vitals.heartbeat``: pending and dead records from the
   outbox's state index) with 100,000 records in the outbox — the cost the station pays every
   period and every scrape, while holding the outbox lock a tap's append also needs.

The load generator shares this machine's cores with the server, so throughput is a floor;
CPU per request is the steadier figure.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import latency_row, quick
from bench._tracker_rig import _cpu_seconds, _free_port

STATIONS = 1000
CLIENTS = 8
METRICS_TOKEN = "bench-metrics-" + "m" * 20
SECRET = "bench-secret-" + "s" * 24


def _prepare(db_url: str) -> tuple[list[str], str]:
    """Migrated database, STATIONS stations (their tokens) and an admin's API token."""
    from tracker import migrations
    from tracker.db import make_engine, make_sessionmaker
    from tracker.models import Role
    from tracker.services import stations, tokens, users

    engine = make_engine(db_url)
    migrations.upgrade(engine)
    with make_sessionmaker(engine)() as session:
        made = [stations.create_station(session, name=f"till-{i:04d}")[1]
                for i in range(STATIONS)]
        users.create_user(session, username="bench", password="bench-password-123",
                          role=Role.admin)
        operator = tokens.create_token(session, username="bench")[1]
    engine.dispose()
    return made, operator


def _beat(n: int) -> dict[str, Any]:
    return {"version": "0.1.0", "started_at": "2026-12-06T10:00:00+00:00", "uptime_s": n,
            "period_s": 30, "outbox_pending": n % 7, "outbox_dead": 0, "readers_present": 1,
            "readers_total": 1, "problem": None}


async def _post_beats(base: str, tokens: list[str], count: int) -> dict[int, int]:
    queue = list(range(count))
    statuses: dict[int, int] = {}

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            n = queue.pop()
            answer = await client.post(
                "/api/v1/stations/heartbeat", json=_beat(n),
                headers={"Authorization": f"Bearer {tokens[n % len(tokens)]}"})
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1

    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(CLIENTS)))
    return statuses


def _tracker_rows(tmp: Path) -> list[dict[str, Any]]:
    db_url = f"sqlite:///{tmp / 'tracker.sqlite'}"
    station_tokens, operator = _prepare(db_url)
    port = _free_port()
    env = {**os.environ, "TRACKER_SECRET_KEY": SECRET, "TRACKER_LOG_LEVEL": "warning",
           "TRACKER_METRICS_TOKEN": METRICS_TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracker", "--database-url", db_url, "serve", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    rows: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(base + "/api/openapi.json", timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("tracker serve did not start") from None
                time.sleep(0.1)
        asyncio.run(_post_beats(base, station_tokens, STATIONS))  # warm-up: every station once
        count = 1000 if quick() else 5000
        cpu0, wall0 = _cpu_seconds(proc.pid), time.perf_counter()
        statuses = asyncio.run(_post_beats(base, station_tokens, count))
        wall, cpu = time.perf_counter() - wall0, _cpu_seconds(proc.pid) - cpu0
        assert statuses == {200: count}, statuses
        per_beat_ms = cpu / count * 1000
        rows.append({"case": "heartbeat ingest, 8 clients", "value": round(count / wall),
                     "unit": "heartbeats/s",
                     "detail": f"{count} heartbeats over {STATIONS} stations, SQLite"})
        rows.append({
            "case": "tracker CPU per heartbeat", "value": round(per_beat_ms, 2), "unit": "ms",
            "detail": f"{STATIONS} stations every 30 s = "
                      f"{per_beat_ms * STATIONS / 30 / 10:.2f}% of one core"})
        with httpx.Client(base_url=base, timeout=30) as client:
            for case, path, token in (
                ("GET /metrics, 1,000 stations", "/metrics", METRICS_TOKEN),
                ("GET /api/v1/stations, 1,000 stations", "/api/v1/stations", operator),
            ):
                samples = []
                reads = 20 if quick() else 60
                cpu0 = _cpu_seconds(proc.pid)
                for _ in range(reads):
                    started = time.perf_counter()
                    answer = client.get(path, headers={"Authorization": f"Bearer {token}"})
                    samples.append(time.perf_counter() - started)
                    assert answer.status_code == 200, answer.text[:200]
                cpu_ms = (_cpu_seconds(proc.pid) - cpu0) / reads * 1000
                rows.append(latency_row(case, samples, f"serial requests, SQLite; tracker CPU "
                                                       f"{cpu_ms:.1f} ms per request"))
    finally:
        proc.terminate()
        proc.wait(15)
    return rows


def _station_row(tmp: Path) -> dict[str, Any]:
    from station.monitor.vitals import Readers, Vitals
    from station.outbox.forwarder import Forwarder
    from station.outbox.outbox import Outbox
    from station.uplink.base import Delivery
    from station.uplink.null import NullUplink
    from station.uplink.records import TapRecord

    records = 20_000 if quick() else 100_000
    outbox = Outbox(tmp / "outbox.sqlite", station_name="bench")
    for n in range(1, records + 1):
        seq = outbox.append(TapRecord(f"04AABBCCDDEE01:{n}", "04AABBCCDDEE01", None, n,
                                      "2026-01-01T00:00:00+00:00", "accepted", None, "x"))
        if n < records - 5:
            outbox.settle(seq, Delivery("delivered", created=True))
    forwarder = Forwarder(outbox, NullUplink())
    vitals = Vitals(lambda: forwarder.health(delivered=False), lambda: Readers(1, 1))  # as app
    samples = []
    for _ in range(20 if quick() else 50):
        started = time.perf_counter()
        beat = vitals.heartbeat(30)
        samples.append(time.perf_counter() - started)
    assert beat.outbox_pending == 6
    outbox.close()
    return latency_row("station heartbeat snapshot", samples,
                       f"outbox with {records:,} records (pending and dead from its index)")


def run() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="bench-stations-") as tmp:
        rows = _tracker_rows(Path(tmp))
        rows.append(_station_row(Path(tmp)))
    load = os.getloadavg()
    for row in rows:
        row["detail"] = f"{row.get('detail', '')}; load {load[0]:.1f}".lstrip("; ")
    return rows
