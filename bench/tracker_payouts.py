"""Tracker payouts benchmark: signed-webhook ingest and Greenfield reconciliation, against the
demo issuer (a BTCPay-like TEST PEER) on loopback and the real tracker server (SQLite), and
the operator pages over 200,000 linked payouts (SQLite and PostgreSQL).

    python -m bench tracker_payouts [--quick] [--pages-only | --no-pages]

1. Webhook ingest: the demo issuer holds N payouts; 16 concurrent clients post one signed
   ``PayoutUpdated`` per payout to ``POST /webhooks/btcpay/demo`` on a live ``uvicorn``
   tracker; each delivery makes the tracker fetch the payout from the issuer over HTTP and
   upsert it (inline, or through the webhook queue in a burst). The clock stops when every
   payout is stored. Target >= 500 deliveries/s; CPU per delivery of the tracker process and
   of this process (load generator + issuer) is reported with the load average.
2. Reconcile: 10,000 payouts on the store, each the destination of a claim's payout row;
   one ``reconcile_issuer`` pass (list with includeCancelled, batches of 500) links them all;
   a second pass finds nothing to change. Target < 10 s; peak RSS reported before and after.
3. Pages: 200,000 payouts linked station -> tap -> claim -> payout (issuer records, history)
   bulk-loaded into SQLite and PostgreSQL (``bench/_payout_pages.py``); p50/p95 over HTTP of
   the dashboard, the payouts list, a card page and a payout page. Target p95 <= 100 ms.

The load generator, the issuer and the server share this machine's cores, so the figures are
floors. The issuer's payouts are put into its books directly (no taps), which it allows tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from bench import peak_kib, quick
from station.demo.books import Payout as DemoPayout
from station.demo.books import PullPayment
from station.demo.issuer import IssuerConfig, create_app, issuer_of, serve_in_thread
from station.demo.webhooks import sign
from tracker import migrations
from tracker.db import Database, make_engine
from tracker.issuers.secrets import SecretBox
from tracker.models import IssuerKind
from tracker.services import issuers as issuer_service
from tracker.services.payout_sync import bolt11_digest
from tracker.services.reconcile import reconcile_issuer
from tracker.settings import load_settings

NAME = "tracker_payouts"
API_KEY = "bench-key-" + "k" * 20
SECRET = "bench-secret-" + "s" * 20
INGEST_TARGET = 500.0
RECONCILE_TARGET_S = 10.0
CLIENTS = 16


def _demo_payouts(issuer: Any, count: int) -> list[DemoPayout]:
    made = []
    for i in range(count):
        payout = DemoPayout(
            id=f"P{i:06d}{secrets.token_hex(4)}",
            pull_payment_id="pp1",
            store_id="demo-store",
            destination=f"lnbcrt210n1bench{i:06d}{secrets.token_hex(20)}",
            payment_hash=secrets.token_hex(32),
            amount_msat=21_000,
        )
        issuer.ledger._payouts[payout.id] = payout  # bench seeding (see the module docstring)
        made.append(payout)
    return made


async def _post_hooks(base: str, payouts: list[DemoPayout]) -> tuple[float, dict[int, int]]:
    """CLIENTS keep-alive connections, one signed delivery in flight on each.

    Minimal HTTP/1.1 over asyncio streams (as ``bench tracker`` does): an httpx client costs
    more CPU per request than the tracker's ingest, and it shares this process with the
    issuer, so it would measure the load generator instead."""
    host, port = base.removeprefix("http://").split(":")
    queue = list(payouts)
    statuses: dict[int, int] = {}

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while queue:
                payout = queue.pop()
                raw = json.dumps({
                    "deliveryId": secrets.token_hex(12), "webhookId": "wh",
                    "isRedelivery": False, "type": "PayoutCreated",
                    "timestamp": int(time.time()), "storeId": "demo-store",
                    "payoutId": payout.id, "pullPaymentId": "pp1",
                    "payoutState": payout.state,
                }).encode()
                writer.write(
                    b"POST /webhooks/btcpay/demo HTTP/1.1\r\nHost: bench\r\n"
                    b"Content-Type: application/json\r\nBTCPay-Sig: "
                    + sign(SECRET, raw).encode()
                    + b"\r\nContent-Length: " + str(len(raw)).encode() + b"\r\n\r\n" + raw
                )
                code = int((await reader.readline()).split()[1])
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                statuses[code] = statuses.get(code, 0) + 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    return time.perf_counter() - started, statuses


def _tracker(workdir: Path) -> tuple[Any, Any, Database]:
    url = f"sqlite:///{workdir / 'tracker.sqlite'}"
    settings = load_settings(env={}, database_url=url, secret_key=secrets.token_hex(24),
                             persist_secret=False, reconcile_seconds=0, live_updates=False)
    engine = make_engine(settings)
    migrations.upgrade(engine)
    return settings, engine, Database(engine)


def _wait_stored(engine: Any, count: int, timeout_s: float = 120.0) -> int:
    """Payouts stored, once ``count`` are (or the timeout passed): the rate is measured until
    the payouts are in the database, not until the deliveries were answered."""
    deadline = time.monotonic() + timeout_s
    while True:
        with engine.connect() as conn:
            stored = int(conn.execute(sa.text("SELECT COUNT(*) FROM payout")).scalar_one())
        if stored >= count or time.monotonic() > deadline:
            return stored
        time.sleep(0.02)


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def _tracker_process(settings: Any) -> Iterator[tuple[str, int]]:
    """`tracker serve` in its own process (it must not share a GIL with the load)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "TRACKER_DATABASE_URL": settings.database_url,
           "TRACKER_SECRET_KEY": settings.secret_key, "TRACKER_RECONCILE_SECONDS": "0",
           "TRACKER_LIVE_UPDATES": "false", "TRACKER_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "tracker.cli", "serve", "--port", str(port)],
                            env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(base + "/api/openapi.json", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        yield base, proc.pid
    finally:
        proc.terminate()
        proc.wait(15)


def run() -> list[dict[str, Any]]:
    """Webhook ingest and reconcile (skip with ``--pages-only``), then the pages over
    200,000 linked payouts on SQLite and PostgreSQL (skip with ``--no-pages``)."""
    rows: list[dict[str, Any]] = []
    if "--pages-only" not in sys.argv:
        rows.extend(_ingest_and_reconcile())
    if "--no-pages" not in sys.argv:
        rows.extend(_pages())
    return rows


def _pages() -> list[dict[str, Any]]:
    from bench._payout_pages import run_pages
    from bench.tracker import Unavailable, database

    payouts, cards = (20_000, 500) if quick() else (200_000, 2_000)
    rows: list[dict[str, Any]] = []
    for backend in ("sqlite", "postgres"):
        with tempfile.TemporaryDirectory() as tmp:
            try:
                with database(backend, Path(tmp)) as url:
                    rows.extend(run_pages(url, Path(tmp), backend=backend, payouts=payouts,
                                          cards=cards))
            except Unavailable as exc:
                rows.append({"case": f"{backend}: pages", "ok": False, "detail": str(exc)})
    return rows


def _ingest_and_reconcile() -> list[dict[str, Any]]:
    hooks = 1000 if quick() else 3000
    reconcile_count = 2000 if quick() else 10_000
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        issuer_app = create_app(IssuerConfig(
            pull_payments=[PullPayment("pp1", "Bench", 10**12)], api_keys=[API_KEY]))
        issuer_base, stop_issuer = serve_in_thread(issuer_app)
        issuer = issuer_of(issuer_app)
        try:
            settings, engine, database = _tracker(workdir)
            box = SecretBox.from_settings(settings)
            with database.sessions() as session:
                issuer_service.add_issuer(session, box, name="demo", kind=IssuerKind.btcpay,
                                          url=issuer_base, store_id="demo-store",
                                          api_key=API_KEY, webhook_secret=SECRET)
            # 1. webhook ingest through the live server
            payouts = _demo_payouts(issuer, hooks)
            with _tracker_process(settings) as (base, pid):
                tracker_cpu, own_cpu = _cpu_s(pid), time.process_time()
                started = time.perf_counter()
                posted_s, statuses = asyncio.run(_post_hooks(base, payouts))
                stored = _wait_stored(engine, hooks)  # queued deliveries count when stored
                elapsed = time.perf_counter() - started
                tracker_cpu = _cpu_s(pid) - tracker_cpu
                own_cpu = time.process_time() - own_cpu
            rate = hooks / elapsed
            rows.append({"case": "signed webhook + payout fetch", "value": round(rate),
                         "unit": "deliveries/s", "ok": rate >= INGEST_TARGET and stored == hooks,
                         "detail": f"{hooks} deliveries, {CLIENTS} clients, statuses {statuses},"
                                   f" all answered in {posted_s:.1f} s, stored in {elapsed:.1f} s,"
                                   f" {stored} payouts stored; target >= {INGEST_TARGET:.0f}/s;"
                                   f" CPU per delivery: tracker {1000 * tracker_cpu / hooks:.2f}"
                                   f" ms, load generator + issuer {1000 * own_cpu / hooks:.2f} ms;"
                                   f" load {os.getloadavg()[0]:.1f}"})
            # 2. reconcile: claims' rows first, then one pass over the store
            issuer.ledger._payouts.clear()
            payouts = _demo_payouts(issuer, reconcile_count)
            with engine.begin() as conn:
                conn.execute(sa.text(
                    "INSERT INTO payout (amount_msat, bolt11, bolt11_digest, state, created,"
                    " updated) VALUES (21000, :b, :d, 'AwaitingPayment', :t, :t)"),
                    [{"b": p.destination, "d": bolt11_digest(p.destination),
                      "t": "2026-12-02 12:00:00"} for p in payouts])
            with database.sessions() as session:
                record = issuer_service.all_issuers(session, box)[0]
            before_kib = peak_kib()

            async def passes() -> tuple[float, Any, float, Any]:
                async with httpx.AsyncClient(timeout=60) as http:
                    t0 = time.perf_counter()
                    first = await reconcile_issuer(database, http, record)
                    t1 = time.perf_counter()
                    second = await reconcile_issuer(database, http, record)
                    return t1 - t0, first, time.perf_counter() - t1, second

            first_s, first, second_s, second = asyncio.run(passes())
            after_kib = peak_kib()
            rows.append({"case": f"reconcile {reconcile_count} payouts (first pass)",
                         "value": round(first_s, 2), "unit": "s",
                         "ok": first_s < RECONCILE_TARGET_S
                         and first.counts.linked == reconcile_count,
                         "detail": f"linked {first.counts.linked}; peak RSS "
                                   f"{before_kib // 1024} -> {after_kib // 1024} MB"})
            rows.append({"case": f"reconcile {reconcile_count} payouts (nothing new)",
                         "value": round(second_s, 2), "unit": "s",
                         "ok": second.counts.unchanged == reconcile_count,
                         "detail": f"unchanged {second.counts.unchanged}"})
            engine.dispose()
        finally:
            stop_issuer()
    return rows


if __name__ == "__main__":
    from bench import format_table

    print(format_table(run()), end="")
