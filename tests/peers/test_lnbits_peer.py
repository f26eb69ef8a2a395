"""The LNbits peer behaves as the station and the demo issuer will use it, with plain httpx.

The merchant (the station's invoice source) makes an invoice with its invoice key; the payer
(an issuer running on LNbits) pays it with its admin key; the merchant then sees it paid, with
a preimage that hashes to the payment hash. The other cases pin down the answers our clients
must read: what an unpayable or repeated payment and a wrong key look like.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import httpx
import pytest

from .lnbits import LnbitsPeer, LnbitsWallet
from .lnbits import lnbits_peer as lnbits_peer  # the session fixture


@pytest.fixture
def http(lnbits_peer: LnbitsPeer) -> Iterator[httpx.Client]:
    with lnbits_peer.client() as client:
        yield client


def _invoice(http: httpx.Client, wallet: LnbitsWallet, sat: int, memo: str = "t") -> httpx.Response:
    return http.post(
        "/api/v1/payments",
        headers={"X-Api-Key": wallet.invoice_key},
        json={"out": False, "amount": sat, "unit": "sat", "memo": memo, "expiry": 600},
    )


def _pay(http: httpx.Client, key: str, bolt11_text: str) -> httpx.Response:
    return http.post(
        "/api/v1/payments", headers={"X-Api-Key": key}, json={"out": True, "bolt11": bolt11_text}
    )


def test_merchant_invoice_paid_by_payer_is_settled(
    lnbits_peer: LnbitsPeer, http: httpx.Client
) -> None:
    merchant, payer = lnbits_peer.merchant, lnbits_peer.payer
    merchant_before = lnbits_peer.balance_msat(merchant)
    payer_before = lnbits_peer.balance_msat(payer)

    created = _invoice(http, merchant, 21, memo="coffee")
    assert created.status_code == 201, created.text
    inv = created.json()
    assert inv["bolt11"] == inv["payment_request"]
    assert inv["status"] == "pending"
    assert inv["amount"] == 21_000  # millisatoshi
    assert inv["bolt11"].startswith("lnbc210n1")  # mainnet prefix, 21 sat = 210 nano-BTC
    assert len(inv["payment_hash"]) == 64

    before = http.get(
        f"/api/v1/payments/{inv['payment_hash']}", headers={"X-Api-Key": merchant.invoice_key}
    )
    assert before.status_code == 200
    assert before.json()["paid"] is False
    assert before.json()["preimage"] is None

    paid = _pay(http, payer.admin_key, inv["bolt11"])
    assert paid.status_code == 201, paid.text
    assert paid.json()["status"] == "success"
    assert paid.json()["payment_hash"] == inv["payment_hash"]

    check = http.get(
        f"/api/v1/payments/{inv['payment_hash']}", headers={"X-Api-Key": merchant.invoice_key}
    )
    assert check.status_code == 200
    body = check.json()
    assert body["paid"] is True
    assert hashlib.sha256(bytes.fromhex(body["preimage"])).hexdigest() == inv["payment_hash"]
    assert body["details"]["status"] == "success"

    assert lnbits_peer.balance_msat(merchant) == merchant_before + 21_000
    assert lnbits_peer.balance_msat(payer) == payer_before - 21_000


def test_second_payment_of_same_invoice_is_refused(
    lnbits_peer: LnbitsPeer, http: httpx.Client
) -> None:
    inv = _invoice(http, lnbits_peer.merchant, 5).json()
    assert _pay(http, lnbits_peer.payer.admin_key, inv["bolt11"]).status_code == 201
    payer_after_first = lnbits_peer.balance_msat(lnbits_peer.payer)

    again = _pay(http, lnbits_peer.payer.admin_key, inv["bolt11"])
    assert again.status_code == 520
    assert again.json() == {"detail": "Internal invoice already paid.", "status": "failed"}
    assert lnbits_peer.balance_msat(lnbits_peer.payer) == payer_after_first


def test_payment_beyond_balance_is_refused_and_invoice_stays_unpaid(
    lnbits_peer: LnbitsPeer, http: httpx.Client
) -> None:
    poor = lnbits_peer.create_wallet("poor", fund_sat=10)
    inv = _invoice(http, lnbits_peer.merchant, 11).json()

    resp = _pay(http, poor.admin_key, inv["bolt11"])
    assert resp.status_code == 520
    assert resp.json() == {"detail": "Insufficient balance.", "status": "failed"}
    check = http.get(
        f"/api/v1/payments/{inv['payment_hash']}",
        headers={"X-Api-Key": lnbits_peer.merchant.invoice_key},
    )
    assert check.json()["paid"] is False
    assert lnbits_peer.balance_msat(poor) == 10_000


def test_invoice_key_cannot_pay(lnbits_peer: LnbitsPeer, http: httpx.Client) -> None:
    inv = _invoice(http, lnbits_peer.merchant, 3).json()
    resp = _pay(http, lnbits_peer.payer.invoice_key, inv["bolt11"])
    assert resp.status_code == 403
    assert "detail" in resp.json()


def test_missing_key_and_unknown_hash(lnbits_peer: LnbitsPeer, http: httpx.Client) -> None:
    no_key = http.post(
        "/api/v1/payments", json={"out": False, "amount": 1, "unit": "sat", "memo": "x"}
    )
    assert no_key.status_code == 401
    assert no_key.json() == {"detail": "No Api Key provided."}

    unknown = http.get(
        "/api/v1/payments/" + "ab" * 32, headers={"X-Api-Key": lnbits_peer.merchant.invoice_key}
    )
    assert unknown.status_code == 404
    assert unknown.json() == {"detail": "Payment does not exist."}


def test_status_without_a_valid_key_is_short(lnbits_peer: LnbitsPeer, http: httpx.Client) -> None:
    """LNbits answers a payment lookup without (or with a wrong) key too, but only with
    ``paid`` and ``preimage``: a client must not rely on ``details`` being there."""
    inv = _invoice(http, lnbits_peer.merchant, 2).json()
    resp = http.get(f"/api/v1/payments/{inv['payment_hash']}", headers={"X-Api-Key": "0" * 32})
    assert resp.status_code == 200
    assert resp.json() == {"paid": False, "preimage": None}


def test_wallet_answers_name_and_balance(lnbits_peer: LnbitsPeer, http: httpx.Client) -> None:
    resp = http.get("/api/v1/wallet", headers={"X-Api-Key": lnbits_peer.payer.invoice_key})
    assert resp.status_code == 200
    body = resp.json()
    assert body["name"] == "payer"
    assert isinstance(body["balance"], int)
    assert body["balance"] > 0
