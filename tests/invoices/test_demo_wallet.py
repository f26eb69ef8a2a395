"""The station's LNbits source against the REAL demo wallet, served by uvicorn on loopback.

The merchant's wallet makes the invoice through our LNbits client; a second wallet (the issuer's)
pays it through the LNbits-style API with its admin key; the lookup then shows paid with a
preimage whose sha256 is the payment hash. Refusals a user would meet: paying twice, paying with
too little balance, paying an expired or foreign invoice, using the wrong key.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import bolt11
import httpx
import pytest

from station.demo.signer import sign_invoice
from station.demo.wallet import (
    TEST_PEER_HEADER,
    WalletConfig,
    create_app,
    serve_in_thread,
)
from station.invoices import InvoiceSourceRefused, make_source

MERCHANT = WalletConfig("merchant", "merchant-invoice-key", "merchant-admin-key", 0)
ISSUER = WalletConfig("issuer", "issuer-invoice-key", "issuer-admin-key", 100_000_000)
POOR = WalletConfig("poor", "poor-invoice-key", "poor-admin-key", 5_000)


class Clock:
    """The wallet's clock, moved by the test (the station's own checks keep real time)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class Demo:
    url: str
    http: httpx.Client
    clock: Clock

    def pay(self, key: str, text: str) -> httpx.Response:
        return self.http.post(
            f"{self.url}/api/v1/payments",
            headers={"X-Api-Key": key},
            json={"out": True, "bolt11": text},
        )

    def balance(self, key: str) -> int:
        answer = self.http.get(f"{self.url}/api/v1/wallet", headers={"X-Api-Key": key})
        assert answer.status_code == 200
        return int(answer.json()["balance"])


def start(tmp: Path | None = None) -> tuple[Demo, Callable[[], None]]:
    clock = Clock()
    state = tmp / "wallet.json" if tmp else None
    url, stop = serve_in_thread(create_app([MERCHANT, ISSUER, POOR], state_path=state, clock=clock))
    return Demo(url, httpx.Client(timeout=10), clock), stop


@pytest.fixture
def demo() -> Iterator[Demo]:
    d, stop = start()
    yield d
    d.http.close()
    stop()


def test_charge_paid_end_to_end_through_our_lnbits_client(demo: Demo) -> None:
    source = make_source("demo", demo.url, MERCHANT.invoice_key, None, demo.http)
    invoice = source.create(21_000, "Coffee #42", 600)

    decoded = bolt11.decode(invoice.bolt11)
    assert decoded.amount_msat == 21_000 and decoded.description == "Coffee #42"
    assert source.lookup(invoice).state == "unpaid"

    paid = demo.pay(ISSUER.admin_key, invoice.bolt11)
    assert paid.status_code == 201, paid.text
    assert paid.json()["payment_hash"] == invoice.payment_hash
    assert paid.json()["status"] == "success"

    status = source.lookup(invoice)
    assert status.state == "paid"
    assert status.preimage is not None
    assert hashlib.sha256(bytes.fromhex(status.preimage)).hexdigest() == invoice.payment_hash
    assert demo.balance(MERCHANT.invoice_key) == 21_000
    assert demo.balance(ISSUER.invoice_key) == 100_000_000 - 21_000


def test_every_answer_is_labelled_as_a_test_peer(demo: Demo) -> None:
    answer = demo.http.get(f"{demo.url}/api/v1/wallet", headers={"X-Api-Key": "nope-nope"})
    assert "test peer" in answer.headers[TEST_PEER_HEADER]
    about = demo.http.get(f"{demo.url}/")
    assert about.json()["test_peer"] is True


def test_paying_twice_is_refused_and_moves_no_money(demo: Demo) -> None:
    source = make_source("demo", demo.url, MERCHANT.invoice_key, None, demo.http)
    invoice = source.create(10_000, "Tea", 600)
    assert demo.pay(ISSUER.admin_key, invoice.bolt11).status_code == 201

    again = demo.pay(ISSUER.admin_key, invoice.bolt11)
    assert again.status_code == 520
    assert "already paid" in again.json()["detail"]
    assert demo.balance(MERCHANT.invoice_key) == 10_000


def test_insufficient_balance_is_refused(demo: Demo) -> None:
    source = make_source("demo", demo.url, MERCHANT.invoice_key, None, demo.http)
    invoice = source.create(6_000, "Cake", 600)
    answer = demo.pay(POOR.admin_key, invoice.bolt11)
    assert answer.status_code == 520
    assert "Insufficient balance" in answer.json()["detail"]
    assert source.lookup(invoice).state == "unpaid"
    assert demo.balance(POOR.invoice_key) == 5_000


def test_an_expired_invoice_is_refused(demo: Demo) -> None:
    source = make_source("demo", demo.url, MERCHANT.invoice_key, None, demo.http)
    invoice = source.create(1_000, "Late", 60)
    demo.clock.now += 61
    answer = demo.pay(ISSUER.admin_key, invoice.bolt11)
    assert answer.status_code == 400
    assert "expired" in answer.json()["detail"]


def test_an_invoice_the_wallet_did_not_make_is_refused(demo: Demo) -> None:
    foreign = sign_invoice(
        amount_msat=1_000,
        payment_hash=hashlib.sha256(b"elsewhere").hexdigest(),
        description="not ours",
        expiry_s=600,
        private_key=hashlib.sha256(b"another node").hexdigest(),
    )
    answer = demo.pay(ISSUER.admin_key, foreign)
    assert answer.status_code == 520
    assert "cannot route" in answer.json()["detail"]


def test_a_resigned_invoice_with_our_hash_but_another_amount_is_refused(demo: Demo) -> None:
    source = make_source("demo", demo.url, MERCHANT.invoice_key, None, demo.http)
    invoice = source.create(50_000, "Dinner", 600)
    cheaper = sign_invoice(
        amount_msat=1_000,
        payment_hash=invoice.payment_hash,
        description="Dinner",
        expiry_s=600,
    )
    assert demo.pay(ISSUER.admin_key, cheaper).status_code == 520
    assert source.lookup(invoice).state == "unpaid"


def test_paying_with_the_invoice_key_is_refused(demo: Demo) -> None:
    source = make_source("demo", demo.url, MERCHANT.invoice_key, None, demo.http)
    invoice = source.create(1_000, "x", 600)
    answer = demo.pay(ISSUER.invoice_key, invoice.bolt11)
    assert answer.status_code == 401
    assert source.lookup(invoice).state == "unpaid"


def test_a_wrong_key_is_refused_by_our_client_without_showing_it(demo: Demo) -> None:
    source = make_source("demo", demo.url, "wrong-key-123456", None, demo.http)
    with pytest.raises(InvoiceSourceRefused) as caught:
        source.create(1_000, "x", 600)
    assert "STATION_INVOICE_KEY" in str(caught.value)
    assert "wrong-key-123456" not in str(caught.value)


def test_only_the_owner_or_the_payer_sees_a_payment(demo: Demo) -> None:
    source = make_source("demo", demo.url, MERCHANT.invoice_key, None, demo.http)
    invoice = source.create(1_000, "x", 600)
    url = f"{demo.url}/api/v1/payments/{invoice.payment_hash}"
    assert demo.http.get(url, headers={"X-Api-Key": POOR.invoice_key}).status_code == 404
    assert demo.http.get(url).status_code == 401
    demo.pay(ISSUER.admin_key, invoice.bolt11)
    seen = demo.http.get(url, headers={"X-Api-Key": ISSUER.invoice_key}).json()
    assert seen["paid"] is True and seen["details"]["amount"] == -1_000


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        json.dumps({"out": False, "amount": "21", "unit": "sat"}).encode(),
        json.dumps({"out": False, "amount": 0, "unit": "sat"}).encode(),
        json.dumps({"out": False, "amount": 10**12, "unit": "sat"}).encode(),
        json.dumps({"out": False, "amount": 1, "unit": "usd"}).encode(),
        json.dumps({"out": False, "amount": 1, "memo": "x" * 700}).encode(),
        json.dumps({"out": False, "amount": 1, "expiry": -5}).encode(),
        json.dumps({"out": "yes", "amount": 1}).encode(),
        json.dumps({"out": True, "bolt11": "lnbc1garbage"}).encode(),
        json.dumps({"out": True, "bolt11": 5}).encode(),
        b"{" + b" " * 20_000 + b"}",
    ],
)
def test_bad_input_is_a_4xx_never_a_500(demo: Demo, body: bytes) -> None:
    answer = demo.http.post(
        f"{demo.url}/api/v1/payments",
        headers={"X-Api-Key": ISSUER.admin_key, "Content-Type": "application/json"},
        content=body,
    )
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text)


def test_state_survives_a_restart(tmp_path: Path) -> None:
    first, stop = start(tmp_path)
    source = make_source("demo", first.url, MERCHANT.invoice_key, None, first.http)
    invoice = source.create(3_000, "kept", 600)
    assert first.pay(ISSUER.admin_key, invoice.bolt11).status_code == 201
    stop()
    assert not list(tmp_path.glob(".wallet.json.*"))  # no temporary file left behind

    second, stop = start(tmp_path)
    try:
        again = make_source("demo", second.url, MERCHANT.invoice_key, None, second.http)
        status = again.lookup(invoice)
        assert status.state == "paid" and status.preimage is not None
        assert second.balance(MERCHANT.invoice_key) == 3_000
        assert second.pay(ISSUER.admin_key, invoice.bolt11).status_code == 520
    finally:
        stop()
