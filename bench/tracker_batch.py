"""Batched ingest: ``POST /api/v1/taps/batch`` (500 taps a request) on `tracker serve`.

What a station catching up after an outage costs the tracker: records/s through the real
server (a subprocess, one worker), both databases; then, in SQL, that every record was stored
exactly once. Reported with the server's CPU per record, PostgreSQL's (all its local
processes) and the load average: on a shared 2-core machine the CPU per record says what a
quiet one would do. Target (issue 11): ≥ 5,000 records/s. ``BENCH_QUICK=1``: a quarter of
the load.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench import quick
from bench._tracker_rig import (
    Unavailable,
    _cpu_seconds,
    _make_stations,
    _postgres_cpu_seconds,
    database,
    server,
)
from tracker import migrations
from tracker.db import make_engine

BATCH = 500
CLIENTS = 2


def _batches(total: int, client: int) -> list[list[dict[str, Any]]]:
    now = datetime.now(UTC).isoformat()
    taps = []
    for i in range(total // CLIENTS):
        uid = f"04{client:02X}{i % 500:010X}"
        counter = i // 500 + 1
        taps.append({"idempotency_key": f"{uid}:{counter}", "card_uid": uid, "card_id": None,
                     "counter": counter, "station_time": now, "outcome": "accepted",
                     "reason": None, "issuer_host": "pay.example.com"})
    return [taps[i:i + BATCH] for i in range(0, len(taps), BATCH)]


def _one(backend: str, total: int) -> dict[str, Any]:
    import httpx

    with tempfile.TemporaryDirectory() as tmp, database(backend, Path(tmp)) as url:
        engine = make_engine(url)
        migrations.upgrade(engine)
        engine.dispose()
        tokens = _make_stations(url, CLIENTS)
        with server(url, Path(tmp)) as (base, pid):
            work = [_batches(total, c) for c in range(CLIENTS)]
            codes: dict[int, int] = {}
            lock = threading.Lock()

            def post(c: int) -> None:
                with httpx.Client(base_url=base, timeout=60) as http:
                    for batch in work[c]:
                        resp = http.post("/api/v1/taps/batch", json={"taps": batch},
                                         headers={"Authorization": f"Bearer {tokens[c]}"})
                        with lock:
                            for r in resp.json()["results"]:
                                codes[r["status"]] = codes.get(r["status"], 0) + 1

            cpu0 = _cpu_seconds(pid)
            db0 = _postgres_cpu_seconds(url)
            start = time.perf_counter()
            threads = [threading.Thread(target=post, args=(c,)) for c in range(CLIENTS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            took = time.perf_counter() - start
            cpu = _cpu_seconds(pid) - cpu0
            db_cpu = _postgres_cpu_seconds(url) - db0
        engine = make_engine(url)
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT COUNT(*) FROM tap")).scalar_one()
            dupes = conn.execute(sa.text(
                "SELECT COUNT(*) FROM (SELECT card_pk, counter FROM tap"
                " GROUP BY card_pk, counter HAVING COUNT(*) > 1) d")).scalar_one()
        engine.dispose()
    rate = total / took
    exact = codes == {201: total} and stored == total and dupes == 0
    db_note = f", PostgreSQL {db_cpu / total * 1000:.3f}" if backend == "postgres" else ""
    return {
        "bench": "tracker_batch", "case": f"batched ingest, {backend}",
        "value": round(rate), "unit": "records/s", "ok": rate >= 5000 and exact,
        "detail": f"{total} taps in batches of {BATCH}, {CLIENTS} clients, 1 worker; "
                  f"stored {stored}, dup counters {dupes}, answers {codes}; CPU ms/record: "
                  f"server {cpu / total * 1000:.3f}{db_note}; "
                  f"load {os.getloadavg()[0]:.1f}; target >= 5000 records/s, exactly once",
    }


def run() -> list[dict[str, Any]]:
    total = 10_000 if quick() else 40_000
    rows = []
    for backend in ("sqlite", "postgres"):
        try:
            rows.append(_one(backend, total))
        except Unavailable as exc:
            rows.append({"bench": "tracker_batch", "case": f"batched ingest, {backend}",
                         "result": "skipped", "ok": "", "detail": str(exc)})
    return rows
