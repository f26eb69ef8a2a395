"""Queued webhook deliveries (a burst beyond ``webhook_inline``), against the REAL demo issuer
on loopback, on SQLite and PostgreSQL: a queued delivery is answered only once it is stored,
every payout arrives, a redelivery changes nothing, a burst is fetched with one Greenfield list
instead of a request per payout, and nothing acknowledged is lost when the tracker is killed
right after its 2xx and started again."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from tracker_server import free_port, running_server

from station.demo.books import Payout as DemoPayout
from station.demo.issuer import create_app, issuer_of, serve_in_thread
from station.demo.webhooks import sign
from tests.demo.helpers import API_KEY, FakePayer, config
from tracker.db import Database, make_sessionmaker
from tracker.issuers.secrets import SecretBox
from tracker.models import IssuerKind
from tracker.services import issuers as issuer_service
from tracker.services import webhook_queue
from tracker.settings import TrackerSettings

SECRET = "whsec-" + "q" * 24


def _add_issuer(engine: Engine, settings: TrackerSettings, url: str) -> int:
    with make_sessionmaker(engine)() as session:
        issuer_service.add_issuer(
            session, SecretBox.from_settings(settings), name="demo", kind=IssuerKind.btcpay,
            url=url, store_id="demo-store", api_key=API_KEY, webhook_secret=SECRET,
        )
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT id FROM issuer")).scalar_one())


def _seed(issuer: Any, count: int) -> list[DemoPayout]:
    made = []
    for i in range(count):
        payout = DemoPayout(id=f"Q{i:04d}{secrets.token_hex(3)}", pull_payment_id="pp1",
                            store_id="demo-store", destination=f"lnbcrt1q{secrets.token_hex(30)}",
                            payment_hash=secrets.token_hex(32), amount_msat=21_000)
        issuer.ledger._payouts[payout.id] = payout  # test seeding, as the bench does
        made.append(payout)
    return made


def _event(payout_id: str, delivery_id: str | None = None) -> bytes:
    return json.dumps({
        "deliveryId": delivery_id or secrets.token_hex(8), "webhookId": "wh",
        "type": "PayoutCreated", "isRedelivery": False, "timestamp": int(time.time()),
        "storeId": "demo-store", "payoutId": payout_id, "pullPaymentId": "pp1",
        "payoutState": "AwaitingPayment",
    }).encode()


def _post(base: str, raw: bytes) -> httpx.Response:
    return httpx.post(f"{base}/webhooks/btcpay/demo", content=raw,
                      headers={"BTCPay-Sig": sign(SECRET, raw)}, timeout=10)


def _count(engine: Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar_one())


def _wait(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


@pytest.fixture
def issuer_peer() -> Iterator[tuple[str, Any]]:
    app = create_app(config(payer=FakePayer()))
    base, stop = serve_in_thread(app)
    try:
        yield base, issuer_of(app)
    finally:
        stop()


def test_a_queued_burst_arrives_whole_and_a_redelivery_changes_nothing(
    settings: TrackerSettings, engine: Engine, issuer_peer: tuple[str, Any],
) -> None:
    base, issuer = issuer_peer
    _add_issuer(engine, settings, base)
    payouts = _seed(issuer, 40)
    with running_server(replace(settings, reconcile_seconds=0, webhook_inline=0), engine) as url:

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=10) as client:
                async def one(p: DemoPayout) -> httpx.Response:
                    raw = _event(p.id)
                    return await client.post(f"{url}/webhooks/btcpay/demo", content=raw,
                                             headers={"BTCPay-Sig": sign(SECRET, raw)})
                return await asyncio.gather(*(one(p) for p in payouts))

        answers = asyncio.run(burst())
        assert {a.status_code for a in answers} == {200}
        assert all(a.json() == {"duplicate": False, "queued": True} for a in answers)
        _wait(lambda: _count(engine, "SELECT COUNT(*) FROM payout") == 40)
        _wait(lambda: _count(engine, "SELECT COUNT(*) FROM webhook_delivery WHERE pending") == 0)
        again = _post(url, _event(payouts[0].id, "fixed-delivery"))
        assert again.json()["queued"] is True
        assert _post(url, _event(payouts[0].id, "fixed-delivery")).json()["duplicate"] is True
        bad = _event(payouts[1].id)
        refused = httpx.post(f"{url}/webhooks/btcpay/demo", content=bad,
                             headers={"BTCPay-Sig": sign("another-secret-0123456", bad)})
        assert refused.status_code == 401
    assert _count(engine, "SELECT COUNT(*) FROM payout") == 40
    assert _count(engine, "SELECT COUNT(*) FROM webhook_delivery") == 41
    assert _count(engine, "SELECT COUNT(*) FROM payout_state_change WHERE source = 'webhook'") == 40
    with engine.connect() as conn:
        ids = {r[0] for r in conn.execute(sa.text("SELECT issuer_payout_id FROM payout"))}
    assert ids == {p.id for p in payouts}


def test_drain_lists_the_store_for_a_burst_and_fetches_a_few_by_id(
    settings: TrackerSettings, engine: Engine, issuer_peer: tuple[str, Any],
) -> None:
    base, issuer = issuer_peer
    issuer_id = _add_issuer(engine, settings, base)
    payouts = _seed(issuer, 50)
    database = Database(engine)
    with database.sessions() as session:
        record = issuer_service.all_issuers(session, SecretBox.from_settings(settings))[0]
    paths: list[str] = []

    async def drain() -> int:
        async def note(request: httpx.Request) -> None:
            paths.append(request.url.path)

        async with httpx.AsyncClient(event_hooks={"request": [note]}) as http:
            async def issuers() -> dict[int, Any]:
                return {issuer_id: record}

            return await webhook_queue.drain(database, http, issuers)

    for p in payouts[:40]:  # a burst: 40 >= MIN_LIST
        with database.sessions() as session:
            assert webhook_queue.enqueue(session, issuer_id=issuer_id,
                                         delivery_id=secrets.token_hex(6), payout_id=p.id)
    with database.sessions() as session:  # one for a payout the issuer does not have
        webhook_queue.enqueue(session, issuer_id=issuer_id, delivery_id="gone",
                              payout_id="no-such-payout")
    assert asyncio.run(drain()) == (41, 0)
    assert paths == ["/api/v1/stores/demo-store/payouts",
                     "/api/v1/stores/demo-store/payouts/no-such-payout"]
    paths.clear()
    for p in payouts[40:43]:  # a few: fetched by id
        with database.sessions() as session:
            webhook_queue.enqueue(session, issuer_id=issuer_id,
                                  delivery_id=secrets.token_hex(6), payout_id=p.id)
    assert asyncio.run(drain()) == (3, 0)
    assert sorted(paths) == sorted(f"/api/v1/stores/demo-store/payouts/{p.id}"
                                   for p in payouts[40:43])
    assert _count(engine, "SELECT COUNT(*) FROM payout") == 43
    assert _count(engine, "SELECT COUNT(*) FROM webhook_delivery WHERE pending") == 0


def _start_tracker(db_url: str, secret: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TRACKER_SECRET_KEY": secret, "TRACKER_LOG_LEVEL": "warning",
           "TRACKER_WEBHOOK_INLINE": "0", "TRACKER_RECONCILE_SECONDS": "0",
           "TRACKER_LIVE_UPDATES": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "tracker", "--database-url", db_url,
                             "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, "tracker serve exited"
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/openapi.json", timeout=2)
            return proc
        except httpx.HTTPError:
            assert time.monotonic() < deadline, "tracker serve did not start"
            time.sleep(0.1)


def test_killed_right_after_the_2xx_the_payout_still_arrives_after_a_restart(
    settings: TrackerSettings, engine: Engine,
) -> None:
    issuer_port = free_port()  # the issuer is down while the tracker takes the delivery
    _add_issuer(engine, settings, f"http://127.0.0.1:{issuer_port}")
    issuer_app = create_app(config(payer=FakePayer()))
    [payout] = _seed(issuer_of(issuer_app), 1)
    port = free_port()
    proc = _start_tracker(settings.database_url, settings.secret_key, port)
    try:
        answer = _post(f"http://127.0.0.1:{port}", _event(payout.id, "d-crash"))
        assert answer.status_code == 200 and answer.json()["queued"] is True
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert _count(engine, "SELECT COUNT(*) FROM webhook_delivery WHERE pending") == 1
    assert _count(engine, "SELECT COUNT(*) FROM payout") == 0
    _base, stop = serve_in_thread(issuer_app, port=issuer_port)
    proc = _start_tracker(settings.database_url, settings.secret_key, port)
    try:
        _wait(lambda: _count(engine, "SELECT COUNT(*) FROM payout") == 1)
        again = _post(f"http://127.0.0.1:{port}", _event(payout.id, "d-crash"))
        assert again.json()["duplicate"] is True
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        stop()
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT issuer_payout_id, state FROM payout")).one()
    assert tuple(row) == (payout.id, "AwaitingPayment")
    assert _count(engine, "SELECT COUNT(*) FROM webhook_delivery WHERE pending") == 0
    assert _count(engine, "SELECT COUNT(*) FROM payout_state_change WHERE source = 'webhook'") == 1


def test_a_group_commit_answers_each_delivery_once(
    settings: TrackerSettings, engine: Engine,
) -> None:
    issuer_id = _add_issuer(engine, settings, "http://127.0.0.1:9")
    database = Database(engine)
    with database.sessions() as session:
        assert webhook_queue.enqueue(session, issuer_id=issuer_id, delivery_id="d0",
                                     payout_id="P0")
    items = [(issuer_id, "d0", "P0"), (issuer_id, "d1", "P1"), (issuer_id, "d1", "P1"),
             (issuer_id, "d2", "P2")]
    assert webhook_queue.enqueue_many(database, items) == [False, True, False, True]

    async def together() -> list[bool]:
        writer = webhook_queue.PendingWriter(database)
        return list(await asyncio.gather(
            *(writer.add(issuer_id, f"g{i % 5}", f"P{i}") for i in range(20))
        ))

    answers = asyncio.run(together())
    assert answers.count(True) == 5 and answers[:5] == [True] * 5
    assert _count(engine, "SELECT COUNT(*) FROM webhook_delivery WHERE pending") == 8
