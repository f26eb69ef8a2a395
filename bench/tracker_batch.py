"""Batched ingest: ``POST /api/v1/taps/batch`` (500 taps a request) on `tracker serve`.

What a station catching up after an outage costs the tracker: records/s through the real
server (a subprocess, one worker), both databases, and the server's CPU per record. Target
(issue 11): ≥ 5,000 records/s. ``BENCH_QUICK=1`` halves the load.
"""

from __future__ import annotations

import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import quick
from bench.tracker import Unavailable, _cpu_seconds, _make_stations, database, server
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
            start = time.perf_counter()
            threads = [threading.Thread(target=post, args=(c,)) for c in range(CLIENTS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            took = time.perf_counter() - start
            cpu = _cpu_seconds(pid) - cpu0
    rate = total / took
    return {
        "bench": "tracker", "case": f"batched ingest, {backend}",
        "result": f"{rate:,.0f} records/s", "ok": "✓" if rate >= 5000 else "✗",
        "detail": f"{total} taps in batches of {BATCH}, {CLIENTS} clients, 1 worker; "
                  f"server CPU {cpu / total * 1000:.3f} ms/record; answers {codes}",
    }


def run() -> list[dict[str, Any]]:
    total = 10_000 if quick() else 40_000
    rows = []
    for backend in ("sqlite", "postgres"):
        try:
            rows.append(_one(backend, total))
        except Unavailable as exc:
            rows.append({"bench": "tracker", "case": f"batched ingest, {backend}",
                         "result": "skipped", "ok": "", "detail": str(exc)})
    return rows
