"""Greenfield client protocol logic on exact BTCPay answer shapes (httpx.MockTransport):
the fault shapes the demo issuer does not produce — HTTP 400 JSON error bodies, validation
lists, 5xx, non-JSON pages, oversized answers — and the v2 payout fields."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tracker.issuers.btcpay.client import (
    GreenfieldClient,
    GreenfieldPayout,
    GreenfieldProtocolError,
    GreenfieldRefused,
    GreenfieldUnavailable,
)
from tracker.issuers.btcpay.webhooks import parse_event, signature, verify

KEY = "secret-api-key-123"


def _run(handler: Any, call: str = "list") -> Any:
    async def go() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            gf = GreenfieldClient(http, url="https://pay.example", store_id="st", api_key=KEY)
            if call == "list":
                return await gf.list_payouts()
            return await gf.get_payout("P1")

    return asyncio.run(go())


def test_list_asks_for_cancelled_and_sends_the_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[])

    assert _run(handler) == []
    assert seen[0].url.params["includeCancelled"] == "true"
    assert seen[0].headers["authorization"] == f"token {KEY}"


def test_http_400_json_body_is_a_typed_refusal_without_the_key() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"code": "invalid-state", "message": "Bad state"})

    with pytest.raises(GreenfieldRefused) as refused:
        _run(handler, "one")
    assert (refused.value.code, refused.value.status, str(refused.value)) == (
        "invalid-state", 400, "Bad state"
    )
    assert KEY not in repr(refused.value)


def test_validation_list_5xx_html_and_oversize() -> None:
    with pytest.raises(GreenfieldRefused, match="payoutId"):
        _run(lambda r: httpx.Response(422, json=[{"path": "payoutId", "message": "bad"}]), "one")
    with pytest.raises(GreenfieldUnavailable):
        _run(lambda r: httpx.Response(503, text="down"))
    with pytest.raises(GreenfieldProtocolError, match="without JSON"):
        _run(lambda r: httpx.Response(200, text="<html>login</html>"))
    with pytest.raises(GreenfieldProtocolError, match="larger"):
        _run(lambda r: httpx.Response(200, content=b"[" + b" " * (2 * 1024 * 1024) + b"]"), "one")
    with pytest.raises(GreenfieldProtocolError, match="state"):
        _run(lambda r: httpx.Response(200, json={"id": "P1", "state": "Weird"}), "one")


def test_v2_fields_and_case_insensitive_proof() -> None:
    payout = GreenfieldPayout.from_api(
        {
            "id": "P1", "revision": 3, "pullPaymentId": "pp", "date": 1732600000,
            "destination": "lnbc1", "originalCurrency": "SATS", "originalAmount": "2100",
            "payoutCurrency": "BTC", "payoutAmount": "0.000021", "payoutMethodId": "BTC-LN",
            "state": "Completed", "metadata": {},
            "paymentProof": {"proofType": "PayoutLightningBlob", "paymenthash": "ab" * 32,
                             "PREIMAGE": "cd" * 32},
        }
    )
    assert payout.revision == 3 and payout.original_amount == "2100"
    assert payout.proof_value("PaymentHash") == "ab" * 32
    assert payout.proof_value("Preimage") == "cd" * 32
    assert "cd" * 32 not in repr(payout)


def test_webhook_signature_and_event() -> None:
    raw = b'{"deliveryId":"d1","type":"PayoutCreated","payoutId":"P1","storeId":"st"}'
    assert verify("s" * 20, raw, signature("s" * 20, raw))
    assert not verify("s" * 20, raw, signature("t" * 20, raw))
    assert not verify("s" * 20, raw, None)
    assert not verify("s" * 20, raw + b" ", signature("s" * 20, raw))
    event = parse_event(raw)
    assert (event.delivery_id, event.payout_id) == ("d1", "P1")
