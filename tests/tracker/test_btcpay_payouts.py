"""Issuer payouts at the tracker, against the REAL demo issuer (a BTCPay-like test peer) on
loopback, on SQLite and PostgreSQL: signed webhooks (good, bad, missing, re-serialised),
redelivery, out-of-order revisions, a payout before its claim, a claim whose payout only a
poll finds, cancelled payouts seen only with includeCancelled, and the end-to-end path
claim + signed webhook -> AwaitingPayment -> Completed, and the same through
``tracker reconcile --once`` with webhooks off."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tracker_server import running_server
from tracker_testlib import StationCredentials, count_rows, make_tap

from station.demo.webhooks import WebhookTarget, sign
from tests.demo.helpers import API_KEY, UID, FakePayer, Tapper, config, invoice, running
from tracker import cli
from tracker.db import make_sessionmaker
from tracker.issuers.secrets import SecretBox
from tracker.models import IssuerKind
from tracker.services import issuers as issuer_service
from tracker.settings import TrackerSettings

SECRET = "whsec-" + "x" * 24
UID_HEX = UID.hex().upper()


@pytest.fixture(autouse=True)
def _cli_sees_the_same_key(settings: TrackerSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    """`tracker reconcile` builds its settings from the environment, like in production."""
    monkeypatch.setenv("TRACKER_SECRET_KEY", settings.secret_key)


def _add_issuer(engine: Engine, settings: TrackerSettings, url: str) -> None:
    with make_sessionmaker(engine)() as session:
        issuer_service.add_issuer(
            session,
            SecretBox.from_settings(settings),
            name="demo",
            kind=IssuerKind.btcpay,
            url=url,
            store_id="demo-store",
            api_key=API_KEY,
            webhook_secret=SECRET,
        )


def _card(base: str) -> Tapper:
    answer = httpx.post(
        f"{base}/api/v1/pull-payments/pp1/boltcards",
        json={"UID": UID.hex(), "onExisting": "UpdateVersion"},
    )
    card = answer.json()
    return Tapper(bytes.fromhex(card["K1"]), bytes.fromhex(card["K2"]))


def _charge(base: str, tapper: Tapper, amount_msat: int = 21_000) -> tuple[str, str]:
    """Tap the card at the issuer and claim ``amount_msat``: (bolt11, payment hash)."""
    p, c = tapper.tap()
    body = httpx.get(f"{base}/boltcard", params={"p": p, "c": c}).json()
    pr, payment_hash = invoice(amount_msat)
    answer = httpx.get(f"{body['callback']}&k1={body['k1']}&pr={pr}", timeout=30)
    assert answer.json()["status"] == "OK", answer.text
    return pr, payment_hash


def _tap_and_claim(
    client: Any, station: StationCredentials, counter: int, pr: str, payment_hash: str
) -> dict[str, Any]:
    tap = make_tap(UID_HEX, counter)
    assert client.post("/api/v1/taps", json=tap, headers=station.headers).status_code == 201
    claim = {
        "claim_id": secrets.token_hex(16),
        "tap_key": tap["idempotency_key"],
        "state": "claimed",
        "amount_msat": 21_000,
        "memo": "coffee",
        "bolt11": pr,
        "payment_hash": payment_hash,
        "issuer_host": "127.0.0.1",
        "k1_hash": None,
        "reason": None,
        "station_time": datetime.now(UTC).isoformat(),
    }
    answer = client.post("/api/v1/claims", json=claim, headers=station.headers)
    assert answer.status_code == 201, answer.text
    return answer.json()["claim"]


def _payouts(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM payout ORDER BY id")).mappings().all()
    return [dict(r) for r in rows]


def _history(engine: Engine, payout_id: int) -> list[tuple[Any, str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT from_state, to_state, source FROM payout_state_change"
                " WHERE payout_pk = :p ORDER BY id"
            ),
            {"p": payout_id},
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def _wait(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


@pytest.fixture
def tracker_url(settings: TrackerSettings, engine: Engine) -> Iterator[str]:
    from dataclasses import replace

    with running_server(replace(settings, reconcile_seconds=0), engine) as url:
        yield url


# --------------------------------------------------------------------------------------------
# End to end through the real demo issuer


def test_claim_and_signed_webhook_move_the_payout_to_completed(
    tracker_url: str, settings: TrackerSettings, engine: Engine, station: StationCredentials,
    admin_client: Any,
) -> None:
    target = WebhookTarget(f"{tracker_url}/webhooks/btcpay/demo", SECRET)
    cfg = config(webhooks=[target], payer=FakePayer(delay_s=0.3), webhook_retry_delays_s=[0.2])
    with running(cfg) as (base, issuer):
        _add_issuer(engine, settings, base)
        tapper = _card(base)
        with httpx.Client(base_url=tracker_url) as client:
            pr, payment_hash = _charge(base, tapper)
            claim = _tap_and_claim(client, station, tapper.counter, pr, payment_hash)
        _wait(lambda: _payouts(engine)[0]["state"] == "Completed")
        rows = _payouts(engine)
        assert len(rows) == 1, "the issuer payout is linked to the claim's row, not a second one"
        row = rows[0]
        assert row["id"] == claim["payout_id"]
        assert row["tap_pk"] is not None and row["issuer_payout_id"] is not None
        assert row["pull_payment_id"] == "pp1" and row["revision"] == 1
        states = [h[1] for h in _history(engine, row["id"])]
        assert states[0] == "AwaitingPayment" and states[-1] == "Completed"
        assert ("AwaitingPayment", "Completed", "webhook") in _history(engine, row["id"])
        detail = admin_client.client.get(f"/api/v1/payouts/{row['id']}").json()
        assert detail["proof_present"] is True and detail["proof_payment_hash"] == payment_hash
        assert detail["claim"]["state"] == "paid"
        preimage = issuer.ledger.payout(row["issuer_payout_id"]).preimage
        page = admin_client.client.get(f"/payouts/{row['id']}", headers={"accept": "text/html"})
        assert "proof present" in page.text and preimage not in page.text
        assert preimage not in json.dumps(detail)


def _last_reconciled(engine: Engine) -> object:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT last_reconciled FROM issuer")).scalar_one()


def test_with_webhooks_off_reconcile_once_finds_the_payout(
    client: TestClient, settings: TrackerSettings, engine: Engine, station: StationCredentials,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with running(config(payer=FakePayer())) as (base, _issuer):
        _add_issuer(engine, settings, base)
        tapper = _card(base)
        pr, payment_hash = _charge(base, tapper)
        claim = _tap_and_claim(client, station, tapper.counter, pr, payment_hash)
        assert _payouts(engine)[0]["state"] == "AwaitingPayment"  # no webhook: stays claimed
        assert claim["state"] == "claimed"
        assert _last_reconciled(engine) is None
        code = cli.main(
            ["--database-url", settings.database_url, "reconcile", "--once", "--json"]
        )
        assert code == 0
        assert _last_reconciled(engine) is not None  # /metrics measures the lag from it
        report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert report["linked"] == 1 and report["open_claims_unmatched"] == 0
    row = _payouts(engine)[0]
    assert row["state"] == "Completed" and row["id"] == claim["payout_id"]
    assert ("AwaitingPayment", "Completed", "poll") in _history(engine, row["id"])
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT state FROM claim")).scalar_one() == "paid"


# --------------------------------------------------------------------------------------------
# Webhook handling, driven by hand against the real demo issuer's Greenfield


def _event(payout_id: str, **kw: Any) -> dict[str, Any]:
    body = {
        "deliveryId": secrets.token_hex(8),
        "webhookId": "wh1",
        "originalDeliveryId": "x",
        "isRedelivery": False,
        "type": "PayoutCreated",
        "timestamp": int(time.time()),
        "storeId": "demo-store",
        "payoutId": payout_id,
        "pullPaymentId": "pp1",
        "payoutState": "AwaitingPayment",
    }
    body.update(kw)
    return body


def _post_hook(client: TestClient, raw: bytes, sig: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if sig is not None:
        headers["BTCPay-Sig"] = sig
    return client.post("/webhooks/btcpay/demo", content=raw, headers=headers)


def test_webhook_signature_good_bad_missing_and_reserialised(
    client: TestClient, settings: TrackerSettings, engine: Engine
) -> None:
    with running(config(payer=FakePayer(delay_s=30))) as (base, issuer):
        _add_issuer(engine, settings, base)
        tapper = _card(base)
        _charge_async(base, tapper)
        payout = _wait_payout(issuer)
        raw = json.dumps(_event(payout.id), indent=2).encode()
        assert _post_hook(client, raw, None).status_code == 401
        assert _post_hook(client, raw, sign("wrong-secret-0123456789", raw)).status_code == 401
        reserialised = json.dumps(json.loads(raw), separators=(",", ":")).encode()
        assert _post_hook(client, reserialised, sign(SECRET, raw)).status_code == 401
        assert count_rows(engine, "payout") == 0 and count_rows(engine, "webhook_delivery") == 0
        good = _post_hook(client, raw, sign(SECRET, raw))
        assert good.status_code == 200, good.text
        assert count_rows(engine, "payout") == 1
        again = _post_hook(client, raw, sign(SECRET, raw))  # redelivery of the same delivery
        assert again.status_code == 200 and again.json()["duplicate"] is True
        assert count_rows(engine, "payout_state_change") == 1
        assert count_rows(engine, "webhook_delivery") == 1
        big = b" " * (settings.webhook_max_bytes + 1)
        assert _post_hook(client, big, sign(SECRET, big)).status_code == 413
        row = _payouts(engine)[0]
        assert row["tap_pk"] is None  # not from a station (no claim yet)
        page = client.get("/api/v1/payouts")  # operators only
        assert page.status_code == 401


def _charge_async(base: str, tapper: Tapper) -> None:
    """Claim at the issuer without waiting for the (slow) payer: the callback answers after
    pay_timeout_s, so run it in a thread."""
    import threading

    p, c = tapper.tap()
    body = httpx.get(f"{base}/boltcard", params={"p": p, "c": c}).json()
    pr, _hash = invoice(21_000)
    _charge_async.last = pr  # type: ignore[attr-defined]
    threading.Thread(
        target=lambda: httpx.get(f"{body['callback']}&k1={body['k1']}&pr={pr}", timeout=60),
        daemon=True,
    ).start()


def _wait_payout(issuer: Any) -> Any:
    _wait(lambda: bool(issuer.ledger.payouts(include_cancelled=True)))
    return issuer.ledger.payouts(include_cancelled=True)[0]


def test_out_of_order_revisions_and_payout_before_its_claim(
    client: TestClient, settings: TrackerSettings, engine: Engine, station: StationCredentials
) -> None:
    with running(config(payer=FakePayer(delay_s=30), pay_timeout_s=0.2)) as (base, issuer):
        _add_issuer(engine, settings, base)
        tapper = _card(base)
        _charge_async(base, tapper)
        payout = _wait_payout(issuer)
        issuer.ledger.settle(payout.id, ok=True, preimage="ee" * 32)  # revision 1, Completed
        raw = json.dumps(_event(payout.id, payoutState="Completed")).encode()
        assert _post_hook(client, raw, sign(SECRET, raw)).status_code == 200
        stored = _payouts(engine)[0]
        assert (stored["state"], stored["revision"], stored["tap_pk"]) == ("Completed", 1, None)
        # An older copy (revision 0, AwaitingPayment) arriving late is ignored.
        from tracker.issuers.btcpay.client import GreenfieldPayout
        from tracker.models import PayoutSource
        from tracker.services.payout_sync import apply_payouts

        old = GreenfieldPayout.from_api({**payout.to_api(), "revision": 0,
                                         "state": "AwaitingPayment", "paymentProof": None})
        with make_sessionmaker(engine)() as session:
            counts = apply_payouts(session, issuer_id=stored["issuer_pk"], issuer_host=None,
                                   payouts=[old], source=PayoutSource.poll)
        assert counts.ignored_older == 1 and _payouts(engine)[0]["state"] == "Completed"
        # The claim arrives after its payout: it adopts the row (no second payout).
        pr = _charge_async.last  # type: ignore[attr-defined]
        claim = _tap_and_claim(client, station, tapper.counter, pr, payout.payment_hash)
        rows = _payouts(engine)
        assert len(rows) == 1 and rows[0]["id"] == claim["payout_id"]
        assert rows[0]["tap_pk"] is not None and rows[0]["state"] == "Completed"
        assert client.get(f"/api/v1/claims/{claim['claim_id']}").status_code == 401


def test_cancelled_payouts_are_found_only_with_include_cancelled(
    client: TestClient, settings: TrackerSettings, engine: Engine
) -> None:
    import asyncio

    from tracker.issuers.btcpay.client import GreenfieldClient

    with running(config(payer=FakePayer(delay_s=30), pay_timeout_s=0.2)) as (base, issuer):
        _add_issuer(engine, settings, base)
        tapper = _card(base)
        _charge_async(base, tapper)
        payout = _wait_payout(issuer)
        issuer.ledger.settle(payout.id, ok=False)

        async def both() -> tuple[int, int]:
            async with httpx.AsyncClient() as http:
                gf = GreenfieldClient(http, url=base, store_id="demo-store", api_key=API_KEY)
                return (len(await gf.list_payouts(include_cancelled=False)),
                        len(await gf.list_payouts()))

        assert asyncio.run(both()) == (0, 1)
        assert cli.main(["--database-url", settings.database_url, "reconcile", "--once"]) == 0
    assert [r["state"] for r in _payouts(engine)] == ["Cancelled"]


def test_greenfield_errors_against_the_demo_issuer() -> None:
    import asyncio

    from tracker.issuers.btcpay.client import (
        GreenfieldClient,
        GreenfieldNotFound,
        GreenfieldUnauthorized,
        GreenfieldUnavailable,
    )

    with running(config(payer=FakePayer())) as (base, _issuer):

        async def check() -> None:
            async with httpx.AsyncClient(timeout=5) as http:
                bad_key = GreenfieldClient(http, url=base, store_id="demo-store", api_key="nope")
                with pytest.raises(GreenfieldUnauthorized) as unauthorized:
                    await bad_key.list_payouts()
                assert "nope" not in str(unauthorized.value)
                good = GreenfieldClient(http, url=base, store_id="demo-store", api_key=API_KEY)
                with pytest.raises(GreenfieldNotFound) as missing:
                    await good.get_payout("no-such-payout")
                assert missing.value.code == "payout-not-found"
                other = GreenfieldClient(http, url=base, store_id="other", api_key=API_KEY)
                with pytest.raises(GreenfieldNotFound):
                    await other.list_payouts()

        asyncio.run(check())

    # A peer that accepts and never answers: the timeout is a typed, retryable error.
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"

        async def timeout() -> None:
            async with httpx.AsyncClient(timeout=0.3) as http:
                gf = GreenfieldClient(http, url=url, store_id="s", api_key=API_KEY)
                with pytest.raises(GreenfieldUnavailable, match="in time"):
                    await gf.list_payouts()

        asyncio.run(timeout())




def test_a_failed_reconcile_pass_leaves_the_lag_growing(
    settings: TrackerSettings, engine: Engine, capsys: pytest.CaptureFixture[str],
) -> None:
    _add_issuer(engine, settings, "http://127.0.0.1:9")  # nothing listens there
    code = cli.main(["--database-url", settings.database_url, "reconcile", "--once", "--json"])
    assert code == 1
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["error"]
    assert _last_reconciled(engine) is None  # /metrics keeps reporting +Inf for it
