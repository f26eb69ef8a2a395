"""The demo issuer (a test peer) on loopback, driven with plain httpx like a station would."""

from __future__ import annotations

import concurrent.futures
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from station.demo.books import PullPayment
from station.demo.issuer import PENDING_REASON, CardConfig, serve_in_thread
from station.demo.payer import LnbitsPayer
from station.demo.webhooks import WebhookTarget
from station.ntag424 import keys as keymod
from tests.demo.helpers import (
    API_KEY,
    ISSUER_KEY,
    UID,
    FakePayer,
    Tapper,
    config,
    fake_lnbits,
    invoice,
    running,
)

AUTH = {"Authorization": f"token {API_KEY}"}


@pytest.fixture
def peer() -> Iterator[tuple[str, Any, Tapper]]:
    """An issuer with one deterministic-key card registered through its own endpoint."""
    with running(config()) as (base, issuer):
        answer = httpx.post(
            f"{base}/api/v1/pull-payments/pp1/boltcards",
            json={"UID": UID.hex(), "onExisting": "UpdateVersion"},
        )
        assert answer.status_code == 200, answer.text
        card = answer.json()
        yield base, issuer, Tapper(bytes.fromhex(card["K1"]), bytes.fromhex(card["K2"]))


def first_get(base: str, p: str, c: str) -> httpx.Response:
    return httpx.get(f"{base}/boltcard", params={"p": p, "c": c})


def callback(body: dict[str, Any], pr: str, **extra: str) -> httpx.Response:
    sep = "&" if "?" in body["callback"] else "?"
    query = "&".join(f"{k}={v}" for k, v in {"k1": body["k1"], "pr": pr, **extra}.items())
    return httpx.get(f"{body['callback']}{sep}{query}", timeout=30)


def test_registration_gives_btcpay_shape_and_deterministic_keys(peer: Any) -> None:
    base, _, _ = peer
    answer = httpx.post(
        f"{base}/api/v1/pull-payments/pp1/boltcards",
        json={"UID": UID.hex(), "onExisting": "KeepVersion"},
    ).json()
    host = base.split("://")[1]
    assert answer["LNURLW"] == f"lnurlw://{host}/boltcard"
    expected = keymod.derive_keys(ISSUER_KEY, UID, answer["version"])
    assert answer["K2"] == expected.k2.hex().upper()
    assert set(answer) == {"LNURLW", "version", "K0", "K1", "K2", "K3", "K4"}
    bumped = httpx.post(
        f"{base}/api/v1/pull-payments/pp1/boltcards",
        json={"UID": UID.hex(), "onExisting": "UpdateVersion"},
    ).json()
    assert bumped["version"] == answer["version"] + 1 and bumped["K2"] != answer["K2"]
    bad = httpx.post(f"{base}/api/v1/pull-payments/pp1/boltcards", json={"UID": "04"})
    assert bad.status_code == 422
    missing = httpx.post(f"{base}/api/v1/pull-payments/nope/boltcards", json={"UID": UID.hex()})
    assert missing.status_code == 404


def test_first_get_is_a_btcpay_withdraw_request(peer: Any) -> None:
    base, _, tapper = peer
    p, c = tapper.tap()
    answer = first_get(base, p, c)
    assert answer.status_code == 200
    assert answer.headers["x-demo-issuer"] == "test peer"
    body = answer.json()
    assert body == {
        "tag": "withdrawRequest",
        "callback": f"{base}/boltcard?p={p}&c={c}",
        "k1": f"{p}-{c}",
        "defaultDescription": "Conference",
        "minWithdrawable": 1000,
        "maxWithdrawable": 2_100_000,
        "currentBalance": 2_100_000,
        "balanceCheck": f"{base}/boltcard?p={p}&c={c}",
    }


def test_counter_moves_only_with_pr_and_replay_is_400(peer: Any) -> None:
    base, issuer, tapper = peer
    p, c = tapper.tap()
    body = first_get(base, p, c).json()
    assert first_get(base, p, c).status_code == 200  # a second GET does not use the tap up
    pr, payment_hash = invoice(21_000)
    answer = callback(body, pr)
    assert answer.status_code == 200 and answer.json() == {"status": "OK"}
    replay = first_get(base, p, c)
    assert replay.status_code == 400
    assert replay.json() == {"status": "ERROR", "reason": "Replayed or expired query"}
    again = callback(body, invoice(21_000)[0])
    assert again.status_code == 400 and again.json()["reason"] == "Replayed or expired query"
    assert issuer.ledger.card(UID).counter == 1
    payout = issuer.ledger.payouts()[0]
    assert payout.state == "Completed" and payout.destination == pr
    assert payout.payment_hash == payment_hash
    assert first_get(base, *tapper.tap()).json()["maxWithdrawable"] == 2_100_000 - 21_000


def test_forged_and_unknown_taps(peer: Any) -> None:
    base, _, tapper = peer
    p, _ = tapper.tap()
    forged = first_get(base, p, "00" * 8)
    assert forged.status_code == 400
    assert forged.json()["reason"] == "Replayed or expired query"
    stranger = Tapper(b"\x01" * 16, b"\x02" * 16).tap()
    assert first_get(base, *stranger).json() == {"status": "ERROR", "reason": "Invalid PICCData"}
    junk = httpx.get(f"{base}/boltcard", params={"p": "zz", "c": "1"})
    assert junk.status_code == 400 and junk.json()["status"] == "ERROR"
    nothing = httpx.get(f"{base}/boltcard")
    assert nothing.json()["reason"] == "Missing p, c, or k1 query parameter"
    huge = httpx.get(f"{base}/boltcard", params={"p": "a" * 10_000})
    assert huge.status_code == 414


def test_duplicate_invoice_is_refused(peer: Any) -> None:
    base, _, tapper = peer
    pr, _ = invoice(5_000)
    assert callback(first_get(base, *tapper.tap()).json(), pr).json() == {"status": "OK"}
    second = callback(first_get(base, *tapper.tap()).json(), pr)
    assert second.status_code == 400
    assert second.json()["reason"].endswith("(Claim result: Duplicate)")


@pytest.mark.parametrize(
    ("amount", "expiry", "age", "reason"),
    [
        (500, 600, 0, "Payment request was not within bounds (1 - 2100 sats)"),
        (2_100_001, 600, 0, "Payment request was not within bounds (1 - 2100 sats)"),
        (None, 600, 0, "Payment request was not within bounds (1 - 2100 sats)"),
        (5_000, 60, 120, "Payment request could not be paid (Claim result: Expired)"),
    ],
)
def test_bad_invoices(peer: Any, amount: int | None, expiry: int, age: int, reason: str) -> None:
    base, issuer, tapper = peer
    body = first_get(base, *tapper.tap()).json()
    answer = callback(body, invoice(amount, expiry=expiry, age_s=age)[0])
    assert answer.status_code == 400
    assert answer.json() == {"status": "ERROR", "reason": reason}
    assert issuer.ledger.payouts(include_cancelled=True) == []


def test_not_a_bolt11_and_wrong_k1(peer: Any) -> None:
    base, _, tapper = peer
    body = first_get(base, *tapper.tap()).json()
    assert callback(body, "lnbcrt1garbage").json()["reason"] == (
        "Payment request was not a valid BOLT11"
    )
    wrong = dict(body, k1="00-11")
    assert callback(wrong, invoice(2_000)[0]).json()["reason"] == "k1 does not match this tap"


def test_concurrent_callbacks_for_one_tap_have_one_winner(peer: Any) -> None:
    base, issuer, tapper = peer
    body = first_get(base, *tapper.tap()).json()
    invoices = [invoice(1_000 + i)[0] for i in range(20)]
    barrier = threading.Barrier(20)

    def fire(pr: str) -> httpx.Response:
        barrier.wait()
        return callback(body, pr)

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(fire, invoices))
    ok = [a for a in answers if a.json().get("status") == "OK"]
    assert len(ok) == 1
    assert all(a.status_code == 400 for a in answers if a not in ok)
    assert len(issuer.ledger.payouts(include_cancelled=True)) == 1


def test_pin_limit_and_three_wrong_pins_disable_the_card() -> None:
    tapper = Tapper(*(lambda k: (k.k1, k.k2))(keymod.derive_keys(ISSUER_KEY, UID)))
    card = CardConfig(UID.hex(), "pp1", pin="1234", pin_limit_msat=10_000)
    with running(config(cards=[card])) as (base, issuer):
        body = first_get(base, *tapper.tap()).json()
        assert body["pinLimit"] == 10_000
        assert callback(body, invoice(5_000)[0]).json() == {"status": "OK"}  # below the limit
        body = first_get(base, *tapper.tap()).json()
        assert callback(body, invoice(20_000)[0]).json()["reason"] == (
            "A PIN is required for this amount"
        )
        body = first_get(base, *tapper.tap()).json()
        assert callback(body, invoice(20_000)[0], pin="1234").json() == {"status": "OK"}
        reasons = []
        for _ in range(3):
            body = first_get(base, *tapper.tap()).json()
            reasons.append(callback(body, invoice(20_000)[0], pin="9999").json()["reason"])
        assert reasons[:2] == ["Wrong PIN (2 tries left)", "Wrong PIN (1 tries left)"]
        assert "disabled" in reasons[2]
        after = first_get(base, *tapper.tap())
        assert after.status_code == 400 and "disabled" in after.json()["reason"]
        assert not issuer.ledger.card(UID).enabled


def test_slow_payer_gives_pending_reason_and_completes_later() -> None:
    payer = FakePayer(delay_s=1.0)
    with running(config(payer=payer, pay_timeout_s=0.2)) as (base, issuer):
        answer = httpx.post(f"{base}/api/v1/pull-payments/pp1/boltcards", json={"UID": UID.hex()})
        keys = answer.json()
        tapper = Tapper(bytes.fromhex(keys["K1"]), bytes.fromhex(keys["K2"]))
        body = first_get(base, *tapper.tap()).json()
        answer = callback(body, invoice(3_000)[0])
        assert answer.json() == {"status": "OK", "reason": PENDING_REASON}
        payout = issuer.ledger.payouts()[0]
        assert payout.state == "AwaitingPayment"
        deadline = time.monotonic() + 5
        while payout.state != "Completed" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert payout.state == "Completed" and payout.revision == 1


def test_failed_payment_cancels_the_payout_and_listing_hides_it_by_default() -> None:
    with running(config(payer=FakePayer(fail="Insufficient balance."))) as (base, issuer):
        keys = keymod.derive_keys(ISSUER_KEY, UID)
        issuer.ledger.add_card(UID, "pp1", keys=keys)
        tapper = Tapper(keys.k1, keys.k2)
        answer = callback(first_get(base, *tapper.tap()).json(), invoice(3_000)[0])
        assert answer.status_code == 400
        assert answer.json() == {"status": "ERROR", "reason": "Insufficient balance."}
        url = f"{base}/api/v1/stores/demo-store/payouts"
        assert httpx.get(url, headers=AUTH).json() == []
        listed = httpx.get(url, params={"includeCancelled": "true"}, headers=AUTH).json()
        assert [p["state"] for p in listed] == ["Cancelled"]
        assert listed[0]["paymentProof"] is None
        # The cancelled payout gave its amount back.
        assert first_get(base, *tapper.tap()).json()["maxWithdrawable"] == 2_100_000


def test_greenfield_payout_shapes_auth_and_404(peer: Any) -> None:
    base, _, tapper = peer
    pr, payment_hash = invoice(21_000)
    callback(first_get(base, *tapper.tap()).json(), pr)
    url = f"{base}/api/v1/stores/demo-store/payouts"
    unauth = httpx.get(url)
    assert unauth.status_code == 401 and unauth.json()["code"] == "unauthenticated"
    assert httpx.get(url, headers={"Authorization": "token wrong"}).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 401
    (payout,) = httpx.get(url, headers=AUTH).json()
    assert set(payout) == {
        "id", "revision", "pullPaymentId", "date", "destination", "originalCurrency",
        "originalAmount", "payoutCurrency", "payoutAmount", "payoutMethodId", "state",
        "metadata", "paymentProof",
    }  # fmt: skip
    assert payout["destination"] == pr and payout["pullPaymentId"] == "pp1"
    assert (payout["originalCurrency"], payout["originalAmount"]) == ("SATS", "21")
    assert (payout["payoutCurrency"], payout["payoutAmount"]) == ("BTC", "0.00000021")
    assert payout["payoutMethodId"] == "BTC-LN" and payout["state"] == "Completed"
    assert payout["revision"] == 1 and isinstance(payout["date"], int)
    assert payout["paymentProof"]["PaymentHash"] == payment_hash
    assert payout["paymentProof"]["Preimage"] == "ab" * 32
    one = httpx.get(f"{url}/{payout['id']}", headers=AUTH)
    assert one.json() == payout
    missing = httpx.get(f"{url}/nope", headers=AUTH)
    assert missing.status_code == 404
    assert missing.json() == {"code": "payout-not-found", "message": "The payout was not found"}
    other_store = httpx.get(f"{base}/api/v1/stores/other/payouts", headers=AUTH)
    assert other_store.status_code == 404


def test_pull_payment_created_through_greenfield(peer: Any) -> None:
    base, _, _ = peer
    url = f"{base}/api/v1/stores/demo-store/pull-payments"
    assert httpx.post(url, json={"name": "x", "amount": "10"}).status_code == 401
    made = httpx.post(
        url, json={"name": "Meetup", "amount": "5000", "currency": "SATS"}, headers=AUTH
    )
    assert made.status_code == 200
    pp = made.json()
    assert pp["name"] == "Meetup" and pp["amount"] == "5000" and pp["currency"] == "SATS"
    card = httpx.post(f"{base}/api/v1/pull-payments/{pp['id']}/boltcards", json={"UID": "04" * 7})
    assert card.status_code == 200
    bad = httpx.post(url, json={"name": "x", "amount": "-1"}, headers=AUTH)
    assert bad.status_code == 422
    notjson = httpx.post(url, content=b"{", headers={**AUTH, "content-type": "application/json"})
    assert notjson.status_code == 422


class _Receiver:
    """A webhook endpoint on loopback that fails its first ``fail_first`` deliveries."""

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[tuple[bytes, str]] = []
        self.fail_first = fail_first
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> JSONResponse:
            self.received.append((await request.body(), request.headers.get("btcpay-sig", "")))
            if len(self.received) <= self.fail_first:
                return JSONResponse({}, status_code=503)
            return JSONResponse({})

        self.app = app


def test_webhooks_are_signed_ordered_and_redelivered() -> None:
    receiver = _Receiver(fail_first=1)
    hook_base, stop_hook = serve_in_thread(receiver.app)
    secret = "webhook-secret"
    target = WebhookTarget(f"{hook_base}/hook", secret, id="wh1")
    try:
        cfg = config(webhooks=[target], webhook_retry_delays_s=[0.1, 0.1])
        with running(cfg) as (base, issuer):
            keys = keymod.derive_keys(ISSUER_KEY, UID)
            issuer.ledger.add_card(UID, "pp1", keys=keys)
            tapper = Tapper(keys.k1, keys.k2)
            callback(first_get(base, *tapper.tap()).json(), invoice(4_000)[0])
            deadline = time.monotonic() + 5
            while len(receiver.received) < 4 and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        stop_hook()
    assert len(receiver.received) == 4  # the first attempt failed and was redelivered
    bodies = []
    for raw, sig in receiver.received:
        expected = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(sig, expected)
        bodies.append(json.loads(raw))
    first, redelivery, approved, updated = bodies
    assert first["type"] == redelivery["type"] == "PayoutCreated"
    assert redelivery["isRedelivery"] is True
    assert redelivery["originalDeliveryId"] == first["deliveryId"] != redelivery["deliveryId"]
    assert (approved["type"], updated["type"]) == ("PayoutApproved", "PayoutUpdated")
    assert updated["payoutState"] == "Completed"
    assert set(updated) == {
        "deliveryId", "webhookId", "originalDeliveryId", "isRedelivery", "type", "timestamp",
        "storeId", "payoutId", "pullPaymentId", "payoutState",
    }  # fmt: skip
    assert updated["webhookId"] == "wh1" and updated["storeId"] == "demo-store"
    assert updated["pullPaymentId"] == "pp1"


def test_lnbits_payer_against_a_local_lnbits_api() -> None:
    wallet = fake_lnbits("admin-key")
    wallet_base, stop_wallet = serve_in_thread(wallet)
    try:
        payer = LnbitsPayer(wallet_base, "admin-key")
        with running(config(payer=payer)) as (base, issuer):
            keys = keymod.derive_keys(ISSUER_KEY, UID)
            issuer.ledger.add_card(UID, "pp1", keys=keys)
            tapper = Tapper(keys.k1, keys.k2)
            pr, payment_hash = invoice(7_000)
            assert callback(first_get(base, *tapper.tap()).json(), pr).json() == {"status": "OK"}
            payout = issuer.ledger.payouts()[0]
            # The pay answer had no preimage: it came from GET /api/v1/payments/{hash}.
            assert payout.preimage == "cd" * 32 and payout.payment_hash == payment_hash
            too_big = callback(first_get(base, *tapper.tap()).json(), invoice(2_000_000)[0])
            assert too_big.json() == {"status": "ERROR", "reason": "Insufficient balance."}
        bad_key = LnbitsPayer(wallet_base, "wrong")
        with running(config(payer=bad_key)) as (base, issuer):
            issuer.ledger.add_card(UID, "pp1", keys=keys)
            tapper = Tapper(keys.k1, keys.k2)
            answer = callback(first_get(base, *tapper.tap()).json(), invoice(7_000)[0])
            assert answer.json() == {"status": "ERROR", "reason": "Invalid adminkey."}
    finally:
        stop_wallet()


def test_card_with_its_own_keys_from_a_programmer_record() -> None:
    own = keymod.KeySet(*(bytes([i]) * 16 for i in range(1, 6)))
    program = keymod.new_bolt_card_response(own, "lnurlw://x/boltcard")
    pp = PullPayment("pp2", "Own keys", 100_000)
    cfg = config(pull_payments=[pp], cards=[CardConfig(UID.hex(), "pp2", program=program)])
    with running(cfg) as (base, _):
        body = first_get(base, *Tapper(own.k1, own.k2).tap()).json()
        assert body["defaultDescription"] == "Own keys" and body["maxWithdrawable"] == 100_000


def test_fault_switches() -> None:
    with running(config()) as (base, issuer):
        keys = keymod.derive_keys(ISSUER_KEY, UID)
        issuer.ledger.add_card(UID, "pp1", keys=keys)
        tapper = Tapper(keys.k1, keys.k2)
        issuer.faults.garbage = True
        garbage = first_get(base, *tapper.tap())
        with pytest.raises(ValueError):
            garbage.json()
        issuer.faults.garbage = False
        issuer.faults.drop_callback = True
        body = first_get(base, *tapper.tap()).json()
        pr, _ = invoice(2_000)
        with pytest.raises(httpx.HTTPError):
            callback(body, pr)
        assert issuer.ledger.payouts()[0].state == "Completed"  # paid, answer dropped
        issuer.faults.drop_callback = False
        issuer.faults.slow_callback_s = 2.0
        body = first_get(base, *tapper.tap()).json()
        with pytest.raises(httpx.TimeoutException):
            httpx.get(f"{body['callback']}&k1={body['k1']}&pr={invoice(2_000)[0]}", timeout=0.5)
        assert len(issuer.ledger.payouts()) == 2
