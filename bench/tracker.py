"""Tracker benchmark: dashboard queries at scale, HTTP ingest rate, export memory.

    python -m bench tracker            # full: 1,000,000 taps, 200,000 payouts, 20,000 cards
    python -m bench tracker --quick    # or BENCH_QUICK=1 / TRACKER_BENCH_QUICK=1: a tenth of it
    python -m bench.tracker [--quick] [--backend sqlite|postgres]

On SQLite (temp file) and PostgreSQL (a throwaway database on 127.0.0.1:5432, skipped when
unreachable) it:

1. seeds 50 stations, 20k cards, 1M taps, 200k payouts in bulk (executemany on SQLite, COPY on
   PostgreSQL) into a migrated schema;
2. times the operator queries through the services (p50/p95 of 40 runs each): dashboard
   (stats for 30 days + 50 recent payouts), all-time stats, the per-card page, a filtered
   payouts page and a deep page reached by cursor, a cards search;
3. runs the real server (`tracker serve --workers 1` and `--workers 2`, uvicorn on 127.0.0.1)
   and posts taps from 8 concurrent keep-alive clients (a minimal asyncio HTTP/1.1 client, so
   the load generator does not take the CPU being measured) for a fixed count, then checks in
   SQL that every tap is stored exactly once; it reports server CPU per tap (and on
   PostgreSQL the database's CPU per tap) and whether uvicorn runs the pure-Python h11 parser
   or httptools/uvloop (``uvicorn[standard]``);
4. streams the full CSV export of all taps from a single-process server and reports the
   server's peak RSS (VmHWM).

Targets: query p95 <= 100 ms, ingest >= 1,000 taps/s, export peak RSS < 200 MB.

Query timings are service-level (the SQL plus building the Public models), without HTTP. The
machine's cores are shared by the server, PostgreSQL and the load generator, so the ingest
figure is a floor for what a dedicated host does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from bench._tracker_rig import (
    Unavailable,
    _cpu_seconds,
    _http_impl,
    _make_stations,
    _postgres_cpu_seconds,
    _rss_mb,
    database,
    server,
)
from tracker import migrations
from tracker.db import make_engine, make_sessionmaker
from tracker.models import PayoutState
from tracker.services import audit as audit_service
from tracker.services import cards as card_service
from tracker.services import payouts as payout_service
from tracker.services import stats as stats_service
from tracker.services import taps as tap_service
from tracker.services.filters import ListFilter

NAME = "tracker"
QUERY_TARGET_MS = 100.0
INGEST_TARGET = 1000.0
RSS_TARGET_MB = 200.0
CLIENTS = 8
BERLIN = ZoneInfo("Europe/Berlin")  # an operator zone that is not UTC


@dataclass(frozen=True)
class Sizes:
    stations: int
    cards: int
    taps: int
    payouts: int
    ingest: int

    @classmethod
    def full(cls) -> Sizes:
        return cls(stations=50, cards=20_000, taps=1_000_000, payouts=200_000, ingest=20_000)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(stations=50, cards=2_000, taps=100_000, payouts=20_000, ingest=4_000)


def _row(backend: str, case: str, *, target: str = "", **values: Any) -> dict[str, Any]:
    """A row for ``python -m bench`` (see bench/__init__.py); the target goes into detail."""
    detail = "; ".join(
        x for x in (str(values.pop("detail", "")), f"target {target}" if target else "") if x
    )
    row: dict[str, Any] = {"bench": NAME, "case": f"{backend}: {case}", **values}
    if detail:
        row["detail"] = detail
    return row


def _log(message: str) -> None:
    print(f"[bench tracker] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Seeding

_STATES = (
    [PayoutState.Completed.value] * 80
    + [PayoutState.AwaitingApproval.value] * 3
    + [PayoutState.AwaitingPayment.value] * 3
    + [PayoutState.InProgress.value] * 2
    + [PayoutState.Cancelled.value] * 5
    + [PayoutState.Failed.value] * 5
    + [PayoutState.Unknown.value] * 2
)


def _sqlite_ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def seed(url: str, sizes: Sizes, now: datetime) -> float:
    """Bulk-load the data set; returns seconds taken."""
    rnd = random.Random(42)
    start = time.perf_counter()
    is_sqlite = url.startswith("sqlite")
    fmt: Callable[[datetime], Any] = _sqlite_ts if is_sqlite else (lambda m: m)
    span = timedelta(days=60)
    t0 = now - span
    step = span / sizes.taps

    stations = [(i, f"station-{i:02d}", fmt(t0), fmt(now)) for i in range(1, sizes.stations + 1)]
    uids = [f"04{(0xA0000000 + i):012X}" for i in range(1, sizes.cards + 1)]
    counters = [0] * (sizes.cards + 1)
    first_seen: list[datetime | None] = [None] * (sizes.cards + 1)
    last_seen: list[datetime | None] = [None] * (sizes.cards + 1)
    taps: list[tuple[Any, ...]] = []
    accepted_ids: list[int] = []
    tap_time: list[datetime] = [t0]
    tap_card = [0]
    tap_station = [0]
    for i in range(1, sizes.taps + 1):
        card = rnd.randint(1, sizes.cards)
        station = rnd.randint(1, sizes.stations)
        when = t0 + step * i
        counters[card] += rnd.randint(1, 2)
        refused = rnd.random() < 0.05
        key = f"station-{station:02d}:{i}" if refused else f"{uids[card - 1]}:{counters[card]}"
        taps.append(
            (
                i,
                card,
                station,
                counters[card],
                fmt(when - timedelta(milliseconds=300)),
                fmt(when),
                "refused" if refused else "accepted",
                "bad CMAC" if refused else None,
                "pay.example.com",
                key,
            )
        )
        tap_time.append(when)
        tap_card.append(card)
        tap_station.append(station)
        if not refused:
            accepted_ids.append(i)
        first_seen[card] = first_seen[card] or when
        last_seen[card] = when
    cards = [
        (
            i,
            uids[i - 1],
            None,
            f"card {i}" if i % 3 == 0 else None,
            "blocked" if i % 97 == 0 else "active",
            counters[i] or None,
            fmt(first_seen[i] or t0),
            fmt(last_seen[i] or t0),
        )
        for i in range(1, sizes.cards + 1)
    ]
    payout_taps = sorted(rnd.sample(accepted_ids, sizes.payouts))
    payouts = []
    for n, tap_id in enumerate(payout_taps, start=1):
        when = tap_time[tap_id] + timedelta(seconds=1)
        payouts.append(
            (
                n,
                tap_id,
                tap_card[tap_id],
                tap_station[tap_id],
                rnd.randint(100, 100_000) * 1000,
                "lnbc" + secrets.token_hex(100),
                secrets.token_hex(32),
                "pay.example.com",
                rnd.choice(_STATES),
                fmt(when),
                fmt(when),
            )
        )
    _log(f"generated data in {time.perf_counter() - start:.1f}s; loading")

    card_cols = "id, uid, card_id, alias, status, last_counter, first_seen, last_seen"
    tap_cols = (
        "id, card_pk, station_pk, counter, station_time, received_at, outcome, reason, "
        "issuer_host, idempotency_key"
    )
    payout_cols = (
        "id, tap_pk, card_pk, station_pk, amount_msat, bolt11, payment_hash, issuer_host, "
        "state, created, updated"
    )
    engine = make_engine(url)
    migrations.upgrade(engine)
    engine.dispose()
    if is_sqlite:
        import sqlite3

        path = url.split(":///", 1)[1]
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        with conn:
            conn.executemany(
                "INSERT INTO station (id, name, created, last_seen) VALUES (?,?,?,?)", stations
            )
            conn.executemany(f"INSERT INTO card ({card_cols}) VALUES (?,?,?,?,?,?,?,?)", cards)
            conn.executemany(f"INSERT INTO tap ({tap_cols}) VALUES (?,?,?,?,?,?,?,?,?,?)", taps)
            conn.executemany(
                f"INSERT INTO payout ({payout_cols}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", payouts
            )
        conn.execute("ANALYZE")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
    else:
        import psycopg

        dsn = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn) as pg:
            with pg.cursor() as cur:
                # Bulk load without the rollup triggers, then build the rollup at once.
                cur.execute("ALTER TABLE tap DISABLE TRIGGER USER")
                for table, cols, rows in (
                    ("station", "id, name, created, last_seen", stations),
                    ("card", card_cols, cards),
                    ("tap", tap_cols, taps),
                    ("payout", payout_cols, payouts),
                ):
                    with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:  # type: ignore[arg-type]
                        for row in rows:
                            copy.write_row(row)
                cur.execute(
                    "INSERT INTO tap_daily_count (day, station_pk, outcome, taps) "
                    "SELECT (received_at AT TIME ZONE 'UTC')::date, station_pk, outcome, "
                    "COUNT(*) FROM tap GROUP BY 1, 2, 3"
                )
                cur.execute("ALTER TABLE tap ENABLE TRIGGER USER")
                for table in ("station", "card", "tap", "payout"):
                    cur.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # type: ignore[arg-type]
                        f"(SELECT MAX(id) FROM {table}))"
                    )
            pg.commit()
            pg.autocommit = True
            pg.execute("VACUUM ANALYZE")
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------------
# Query latencies


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return p50 * 1000, p95 * 1000


def query_latencies(url: str, sizes: Sizes, now: datetime, backend: str) -> list[dict[str, Any]]:
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    rnd = random.Random(7)
    uids = [f"04{(0xA0000000 + i):012X}" for i in range(1, sizes.cards + 1)]
    month_ago = now - timedelta(days=30)

    def dashboard(s: Any) -> None:
        stats_service.dashboard_stats(s, since=month_ago, now=now)
        payout_service.list_payouts(s, limit=50)

    def stats_all_time(s: Any) -> None:
        stats_service.dashboard_stats(s, now=now)

    def card_page(s: Any) -> None:
        card_page_of(s, rnd.choice(uids))

    def card_page_full(s: Any) -> None:
        """What /cards/{uid} runs for an admin since issue 12: also the 30-day activity
        chart (two aggregates cut at the operator's day starts) and the card's audit rows."""
        uid = rnd.choice(uids)
        card_page_of(s, uid)
        card_service.card_activity(s, uid=uid, zone=BERLIN, now=now)
        audit_service.list_events(
            s, flt=audit_service.AuditFilter(target_type="card", target_id=uid), limit=10
        )

    def card_page_of(s: Any, uid: str) -> None:
        card_service.card_detail(s, uid=uid)
        tap_service.list_taps(s, flt=ListFilter(card=uid), limit=50)
        payout_service.list_payouts(s, flt=ListFilter(card=uid), limit=50)

    def filtered_payouts(s: Any) -> None:
        flt = ListFilter(
            state=PayoutState.Completed,
            station=f"station-{rnd.randint(1, sizes.stations):02d}",
            min_sats=1000,
            max_sats=50_000,
            since=now - timedelta(days=rnd.randint(5, 50)),
        )
        payout_service.list_payouts(s, flt=flt, limit=50)

    def deep_page(s: Any) -> None:
        flt = ListFilter(state=PayoutState.Completed)
        cursor = None
        for _ in range(5):  # page 5 by cursor: each page is an index range scan
            _, cursor = payout_service.list_payouts(s, flt=flt, cursor=cursor, limit=50)

    def cards_search(s: Any) -> None:
        card_service.list_cards(s, q=f"{rnd.randint(1, 999):03d}", page=1)

    def taps_by_station(s: Any) -> None:
        flt = ListFilter(station=f"station-{rnd.randint(1, sizes.stations):02d}")
        tap_service.list_taps(s, flt=flt, limit=50)

    cases: list[tuple[str, Callable[[Any], None], int]] = [
        ("dashboard: stats 30d + 50 recent payouts", dashboard, 1),
        ("stats, all time", stats_all_time, 1),
        ("per-card page: detail + taps + payouts", card_page, 1),
        ("per-card page + 30-day activity + audit rows", card_page_full, 1),
        ("filtered payouts page (state+station+amount+since)", filtered_payouts, 1),
        ("payouts by state, 5 pages by cursor (per page)", deep_page, 5),
        ("cards search", cards_search, 1),
        ("taps by station, first page", taps_by_station, 1),
    ]
    rows = []
    for label, fn, per in cases:
        samples = []
        for i in range(43):
            with factory() as s:
                t = time.perf_counter()
                fn(s)
                elapsed = (time.perf_counter() - t) / per
            if i >= 3:  # warm-up
                samples.append(elapsed)
        p50, p95 = _percentiles(samples)
        rows.append(
            _row(
                backend,
                label,
                p50_ms=round(p50, 2),
                p95_ms=round(p95, 2),
                target="p95 <= 100 ms",
                ok=p95 <= QUERY_TARGET_MS,
            )
        )
        _log(f"{backend}: {label}: p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    engine.dispose()
    return rows


# ---------------------------------------------------------------------------------------------
# The real server


async def _post_all(base: str, tokens: list[str], total: int) -> tuple[dict[int, int], float]:
    """8 concurrent keep-alive connections, one request in flight on each.

    The load generator speaks minimal HTTP/1.1 over asyncio streams (like wrk) so that on a
    2-core machine the client does not eat the CPU the server is being measured with; an
    httpx client costs more per request than the tracker does.
    """
    host, port = base.removeprefix("http://").split(":")
    per_client = total // len(tokens)
    salt = secrets.randbelow(0xFFFF)  # fresh cards for every run
    codes: dict[int, int] = {}
    now = datetime.now(UTC).isoformat()

    async def client(n: int, token: str) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for i in range(per_client):
                # Each client owns its cards; counters rise as a real card's would.
                uid = f"05{salt:04X}{n:02X}{i % 50:06X}"
                counter = i // 50 + 1
                body = json.dumps(
                    {
                        "idempotency_key": f"{uid}:{counter}",
                        "card_uid": uid,
                        "card_id": None,
                        "counter": counter,
                        "station_time": now,
                        "outcome": "accepted",
                        "reason": None,
                        "issuer_host": "pay.example.com",
                    }
                ).encode()
                writer.write(
                    b"POST /api/v1/taps HTTP/1.1\r\nHost: bench\r\n"
                    b"Authorization: Bearer " + token.encode() + b"\r\n"
                    b"Content-Type: application/json\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
                )
                status_line = await reader.readline()
                code = int(status_line.split()[1])
                length = 0
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                codes[code] = codes.get(code, 0) + 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client(n, t) for n, t in enumerate(tokens)))
    return codes, time.perf_counter() - start


def ingest(url: str, sizes: Sizes, workdir: Path, backend: str, workers: int) -> dict[str, Any]:
    tokens = _make_stations(url, CLIENTS)
    engine = make_engine(url)
    with engine.connect() as conn:
        before = conn.execute(sa.text("SELECT COUNT(*) FROM tap")).scalar_one()
    with server(url, workdir, workers=workers) as (base, pid):
        cpu_before = _cpu_seconds(pid, children=workers > 1)
        db_before = _postgres_cpu_seconds(url)
        own_before = time.process_time()
        codes, seconds = asyncio.run(_post_all(base, tokens, sizes.ingest))
        server_cpu = _cpu_seconds(pid, children=workers > 1) - cpu_before
        db_cpu = _postgres_cpu_seconds(url) - db_before
        client_cpu = time.process_time() - own_before
    sent = sum(codes.values())
    with engine.connect() as conn:
        after = conn.execute(sa.text("SELECT COUNT(*) FROM tap")).scalar_one()
        dupes = conn.execute(
            sa.text(
                "SELECT COUNT(*) FROM (SELECT card_pk, counter FROM tap WHERE outcome='accepted' "
                "GROUP BY card_pk, counter HAVING COUNT(*) > 1) d"
            )
        ).scalar_one()
    engine.dispose()
    rate = sent / seconds
    exact = codes.get(201, 0) == sent and after - before == sent and dupes == 0
    _log(
        f"{backend}: ingest {sent} taps in {seconds:.1f}s = {rate:.0f}/s with {workers} "
        f"worker(s); answers {codes}; stored {after - before}; duplicates {dupes}; "
        f"CPU per tap: server {server_cpu / sent * 1000:.2f} ms, client "
        f"{client_cpu / sent * 1000:.2f} ms"
        + (f", PostgreSQL {db_cpu / sent * 1000:.2f} ms" if backend == "postgres" else "")
    )
    db_note = f", PostgreSQL CPU {db_cpu / sent * 1000:.2f} ms/tap" if backend == "postgres" else ""
    return _row(
        backend,
        f"ingest over HTTP, {CLIENTS} clients, {workers} worker(s)",
        value=round(rate),
        unit="taps/s",
        detail=f"{sent} sent, {after - before} stored, answers {codes}, dup counters {dupes}; "
        f"server CPU {server_cpu / sent * 1000:.2f} ms/tap{db_note}; HTTP parser {_http_impl()}",
        target=">= 1000 taps/s, none lost or duplicated",
        ok=rate >= INGEST_TARGET and exact,
    )


def export_memory(url: str, workdir: Path, backend: str, expected_rows: int) -> dict[str, Any]:
    import httpx

    from tracker.models import Role
    from tracker.services import users as user_service

    engine = make_engine(url)
    password = secrets.token_urlsafe(16)
    username = f"bench-{secrets.token_hex(3)}"
    with make_sessionmaker(engine)() as s:
        user_service.create_user(s, username=username, password=password, role=Role.viewer)
    engine.dispose()
    with (
        server(url, workdir, workers=1) as (base, pid),
        httpx.Client(base_url=base, timeout=600) as http,
    ):
        _login(http, username, password)
        baseline = _rss_mb(pid, "VmRSS")
        lines = 0
        start = time.perf_counter()
        with http.stream("GET", "/api/v1/taps/export.csv") as answer:
            answer.raise_for_status()
            for chunk in answer.iter_bytes():
                lines += chunk.count(b"\n")
        seconds = time.perf_counter() - start
        peak = _rss_mb(pid)
    rows = lines - 1
    _log(
        f"{backend}: exported {rows} taps in {seconds:.1f}s; server peak RSS {peak:.0f} MB "
        f"(RSS before the export {baseline:.0f} MB)"
    )
    return _row(
        backend,
        "CSV export of all taps: server peak RSS",
        value=round(peak, 1),
        unit="MB",
        detail=f"{rows} rows in {seconds:.1f}s ({rows / seconds:.0f} rows/s); RSS before the "
        f"export {baseline:.0f} MB",
        target="< 200 MB, every row",
        ok=peak < RSS_TARGET_MB and rows >= expected_rows,
    )


def _login(http: Any, username: str, password: str) -> None:
    """Sign in through the operator login form."""
    import re

    from tracker.web import auth

    form = http.get("/login")
    found = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    form_token = found.group(1) if found else ""
    answer = http.post(
        "/login",
        data={"username": username, "password": password, auth.CSRF_FIELD: form_token},
        follow_redirects=False,
    )
    if answer.status_code != 303:
        raise RuntimeError(f"login failed ({answer.status_code}); is /login installed?")


# ---------------------------------------------------------------------------------------------
# Entry points


def _quick_from_env() -> bool:
    return any(os.environ.get(v) == "1" for v in ("BENCH_QUICK", "TRACKER_BENCH_QUICK"))


def run(
    quick: bool | None = None,
    backends: tuple[str, ...] = ("sqlite", "postgres"),
    workers: tuple[int, ...] = (1, 2),
) -> list[dict[str, Any]]:
    """Run everything; one row per measurement (see module docstring)."""
    if quick is None:
        quick = _quick_from_env() or "--quick" in sys.argv
    sizes = Sizes.quick() if quick else Sizes.full()
    rows: list[dict[str, Any]] = []
    for backend in backends:
        workdir = Path(tempfile.mkdtemp(prefix=f"tracker-bench-{backend}-"))
        try:
            with database(backend, workdir) as url:
                now = datetime.now(UTC)
                seconds = seed(url, sizes, now)
                rows.append(
                    _row(
                        backend,
                        "seed (bulk load)",
                        value=round(seconds, 1),
                        unit="s",
                        detail=f"{sizes.taps} taps, {sizes.payouts} payouts, {sizes.cards} "
                        f"cards, {sizes.stations} stations",
                    )
                )
                _log(f"{backend}: seeded in {seconds:.1f}s")
                rows.extend(query_latencies(url, sizes, now, backend))
                for w in workers:
                    rows.append(ingest(url, sizes, workdir, backend, w))
                rows.append(export_memory(url, workdir, backend, sizes.taps))
        except Unavailable as exc:
            rows.append(_row(backend, "skipped", detail=str(exc)))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tracker")
    parser.add_argument("--quick", action="store_true", help="a tenth of the data")
    parser.add_argument("--backend", choices=["sqlite", "postgres"], action="append")
    parser.add_argument("--workers", type=int, action="append", help="server workers for ingest")
    args = parser.parse_args(argv)
    rows = run(
        quick=args.quick or _quick_from_env(),
        backends=tuple(args.backend or ("sqlite", "postgres")),
        workers=tuple(args.workers or (1, 2)),
    )
    from bench import format_table

    print(format_table(rows), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
