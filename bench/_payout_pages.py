"""Operator pages over 200,000 linked payouts (a helper of ``bench tracker_payouts``).

Seeds, in bulk (``executemany`` on SQLite, ``COPY`` on PostgreSQL; never the API), a tracker
whose every payout is an issuer's record linked the whole way: station -> accepted tap ->
claim -> payout (issuer ids, revision, amounts, proof for the Completed ones), with a state
history of two rows per payout and one per claim, over 60 days. Then it serves it with
``tracker serve`` and times, over HTTP as a signed-in operator, the pages an operator opens:
the dashboard (7 days and all time), the payouts list, a card page and a payout page.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from tracker import migrations
from tracker.db import make_engine
from tracker.security import hash_password

PAGE_TARGET_MS = 100.0
PASSWORD = "bench-password-123"
_FINAL = ["Completed"] * 85 + ["Cancelled"] * 5 + ["AwaitingPayment"] * 5 + ["InProgress"] * 5
_CLAIM_OF = {"Completed": "paid", "Cancelled": "refused", "AwaitingPayment": "claimed",
             "InProgress": "pending"}


def _rows(
    payouts: int, cards: int, stations: int, now: datetime
) -> dict[str, tuple[str, list[Any]]]:
    """Every table's columns and rows (datetimes as aware UTC values)."""
    rnd = random.Random(9)
    t0 = now - timedelta(days=60)
    step = timedelta(days=60) / payouts
    out: dict[str, tuple[str, list[Any]]] = {
        "station": ("id, name, created, last_seen",
                    [(i, f"station-{i:02d}", t0, now) for i in range(1, stations + 1)]),
        "card": ("id, uid, alias, status, last_counter, first_seen, last_seen",
                 [(i, f"04{0xB0000000 + i:012X}", f"card {i}" if i % 2 else None, "active",
                   0, t0, now) for i in range(1, cards + 1)]),
        "issuer": ("id, name, kind, url, store_id, api_key_enc, webhook_secret_enc, created",
                   [(1, "bench", "btcpay", "https://pay.example.com", "store1", "-", "-", t0)]),
        "user_account": ("id, username, role, password_hash, created, disabled",
                         [(1, "bench", "admin", hash_password(PASSWORD), t0, False)]),
    }
    counters = [0] * (cards + 1)
    taps, claims, payout_rows, history, claim_history = [], [], [], [], []
    for i in range(1, payouts + 1):
        card, station = rnd.randint(1, cards), rnd.randint(1, stations)
        counters[card] += 1
        when = t0 + step * i
        paid_at = when + timedelta(seconds=2)
        state = rnd.choice(_FINAL)
        amount = rnd.randint(100, 100_000) * 1000
        uid = f"04{0xB0000000 + card:012X}"
        taps.append((i, card, station, counters[card], when, when, "accepted",
                     "pay.example.com", f"{uid}:{counters[card]}", True))
        payment_hash = secrets.token_hex(32)
        bolt11 = "lnbc" + secrets.token_hex(90)
        proof = (json.dumps({"PaymentHash": payment_hash, "Preimage": secrets.token_hex(32)})
                 if state == "Completed" else None)
        payout_rows.append((
            i, i, card, station, amount, bolt11, payment_hash, "pay.example.com", state,
            when, paid_at, 1, f"PO{i:08d}", "pp1", 1, str(amount // 1000), "SATS",
            f"{amount / 1e11:.8f}", "BTC", proof, f"claim:{i:032x}", when))
        claims.append((i, f"{i:032x}", station, i, i, _CLAIM_OF[state], amount, "coffee",
                       bolt11, payment_hash, "pay.example.com", when, when, paid_at))
        history.append((2 * i - 1, i, None, "AwaitingPayment", "station", None, when))
        history.append((2 * i, i, "AwaitingPayment", state, "webhook", "revision 1", paid_at))
        claim_history.append((i, i, None, _CLAIM_OF[state], "station", None, when))
    out["tap"] = ("id, card_pk, station_pk, counter, station_time, received_at, outcome, "
                  "issuer_host, idempotency_key, verified", taps)
    out["payout"] = ("id, tap_pk, card_pk, station_pk, amount_msat, bolt11, payment_hash, "
                     "issuer_host, state, created, updated, issuer_pk, issuer_payout_id, "
                     "pull_payment_id, revision, original_amount, original_currency, "
                     "payout_amount, payout_currency, proof, idempotency_key, issuer_created",
                     payout_rows)
    out["claim"] = ("id, claim_id, station_pk, tap_pk, payout_pk, state, amount_msat, memo, "
                    "bolt11, payment_hash, issuer_host, station_time, created, updated", claims)
    out["payout_state_change"] = ("id, payout_pk, from_state, to_state, source, reason, "
                                  "changed_at", history)
    out["claim_state_change"] = ("id, claim_pk, from_state, to_state, source, reason, "
                                 "changed_at", claim_history)
    for i in range(1, cards + 1):
        out["card"][1][i - 1] = (*out["card"][1][i - 1][:4], counters[i],
                                 *out["card"][1][i - 1][5:])
    return out


#: The payout rollups (migration 0011) built from the loaded rows in one pass each (the
#: day expression is PostgreSQL's; SQLite's ``date(created)`` is swapped in there).
_PG_ROLLUP = (
    "INSERT INTO payout_daily (day, state, payouts, amount_msat) "
    "SELECT (created AT TIME ZONE 'UTC')::date, state, COUNT(*), SUM(amount_msat) "
    "FROM payout GROUP BY 1, 2",
    "INSERT INTO payout_card_total (card_pk, state, payouts, amount_msat) "
    "SELECT card_pk, state, COUNT(*), SUM(amount_msat) FROM payout "
    "WHERE card_pk IS NOT NULL GROUP BY 1, 2",
)
_ORDER = ("station", "card", "issuer", "user_account", "tap", "payout", "claim",
          "payout_state_change", "claim_state_change")


def seed(url: str, *, payouts: int, cards: int, stations: int, now: datetime) -> float:
    """Migrate and bulk-load; seconds taken."""
    started = time.perf_counter()
    engine = make_engine(url)
    migrations.upgrade(engine)
    engine.dispose()
    tables = _rows(payouts, cards, stations, now)
    if url.startswith("sqlite"):
        import sqlite3

        def cell(v: Any) -> Any:
            return v.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v

        conn = sqlite3.connect(url.split(":///", 1)[1])
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        with conn:
            # SQLite cannot disable a trigger: drop the payout rollup's, load, build the
            # rollup at once, and create the triggers again from their stored SQL.
            triggers = conn.execute("SELECT name, sql FROM sqlite_master "
                                    "WHERE type = 'trigger' AND tbl_name = 'payout'").fetchall()
            for trigger, _sql in triggers:
                conn.execute(f"DROP TRIGGER {trigger}")
            for name in _ORDER:
                cols, rows = tables[name]
                marks = ",".join("?" * len(cols.split(",")))
                conn.executemany(f"INSERT INTO {name} ({cols}) VALUES ({marks})",
                                 ([cell(v) for v in row] for row in rows))
            for statement in _PG_ROLLUP:
                conn.execute(statement.replace("(created AT TIME ZONE 'UTC')::date",
                                               "date(created)"))
            for _trigger, sql in triggers:
                conn.execute(sql)
        conn.execute("ANALYZE")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
    else:
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as pg:
            with pg.cursor() as cur:
                # Bulk load without the payout rollup triggers, then build the rollup at once.
                cur.execute("ALTER TABLE payout DISABLE TRIGGER USER")
                for name in _ORDER:
                    cols, rows = tables[name]
                    with cur.copy(f"COPY {name} ({cols}) FROM STDIN") as copy:  # type: ignore[arg-type]
                        for row in rows:
                            copy.write_row(row)
                    cur.execute(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "  # type: ignore[arg-type]
                                f"(SELECT MAX(id) FROM {name}))")
                for statement in _PG_ROLLUP:
                    cur.execute(statement)  # type: ignore[arg-type]
                cur.execute("ALTER TABLE payout ENABLE TRIGGER USER")
            pg.commit()
            pg.autocommit = True
            pg.execute("VACUUM ANALYZE")
    seconds = time.perf_counter() - started
    _check_rollups(url)
    return seconds


def _check_rollups(url: str) -> None:
    """The rollups built at once hold every payout (else the timed pages would be wrong)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            daily, cards, rows = conn.execute(sa.text(
                "SELECT (SELECT SUM(payouts) FROM payout_daily), "
                "(SELECT SUM(payouts) FROM payout_card_total), (SELECT COUNT(*) FROM payout)"
            )).one()
    finally:
        engine.dispose()
    if not daily == cards == rows:
        raise RuntimeError(f"payout rollups hold {daily} / {cards} payouts, not {rows}")


@contextlib.contextmanager
def serve(url: str, workdir: Path) -> Iterator[str]:
    """``tracker serve`` on the seeded database (own process), live updates and polling off."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "TRACKER_DATABASE_URL": url, "TRACKER_SECRET_KEY": "b" * 48,
           "TRACKER_RECONCILE_SECONDS": "0", "TRACKER_LIVE_UPDATES": "false",
           "TRACKER_LOG_LEVEL": "warning", "TRACKER_TIMEZONE": "UTC"}
    log = open(workdir / f"pages-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "tracker.cli", "serve", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if proc.poll() is not None:
                raise RuntimeError(f"tracker serve exited; see {log.name}")
            try:
                httpx.get(base + "/login", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


def _login(http: httpx.Client) -> None:
    import re

    from tracker.web import auth

    form = http.get("/login")
    found = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    answer = http.post("/login", data={"username": "bench", "password": PASSWORD,
                                       auth.CSRF_FIELD: found.group(1) if found else ""})
    if answer.status_code != 303:
        raise RuntimeError(f"login failed ({answer.status_code})")


def page_latencies(base: str, *, payouts: int, cards: int, backend: str,
                   runs: int = 40) -> list[dict[str, Any]]:
    """p50/p95 of each page over ``runs`` requests after 3 warm-ups (one client, in turn)."""
    rnd = random.Random(3)
    pages = {
        "dashboard (7 days)": lambda: "/",
        "dashboard (all time)": lambda: "/?period=all",
        "payouts list": lambda: "/payouts",
        "card page": lambda: f"/cards/04{0xB0000000 + rnd.randint(1, cards):012X}",
        "payout page": lambda: f"/payouts/{rnd.randint(1, payouts)}",
    }
    rows = []
    with httpx.Client(base_url=base, timeout=60, follow_redirects=False,
                      headers={"accept": "text/html"}) as http:
        _login(http)
        for label, path in pages.items():
            samples = []
            for i in range(runs + 3):
                target = path()
                started = time.perf_counter()
                answer = http.get(target)
                elapsed = time.perf_counter() - started
                if answer.status_code != 200:
                    raise RuntimeError(f"GET {target}: HTTP {answer.status_code}")
                if i >= 3:
                    samples.append(elapsed)
            ordered = sorted(samples)
            p50 = ordered[len(ordered) // 2] * 1000
            p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1000
            rows.append({"case": f"{backend}: {label}, {payouts:,} linked payouts",
                         "p50_ms": round(p50, 1), "p95_ms": round(p95, 1),
                         "ok": p95 <= PAGE_TARGET_MS,
                         "detail": f"HTTP as a signed-in admin, {runs} runs; target p95 <= "
                                   f"{PAGE_TARGET_MS:.0f} ms; load {os.getloadavg()[0]:.1f}"})
    return rows


def run_pages(database_url: str, workdir: Path, *, backend: str, payouts: int,
              cards: int) -> list[dict[str, Any]]:
    seconds = seed(database_url, payouts=payouts, cards=cards, stations=10,
                   now=datetime.now(UTC))
    rows: list[dict[str, Any]] = [{"case": f"{backend}: seed {payouts:,} linked payouts",
                                   "value": round(seconds, 1), "unit": "s",
                                   "detail": "taps, claims, payouts, 3 history rows each; bulk"}]
    with serve(database_url, workdir) as base:
        rows.extend(page_latencies(base, payouts=payouts, cards=cards, backend=backend))
    return rows
