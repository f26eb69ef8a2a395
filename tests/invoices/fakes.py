"""Fake BTCPay, LNbits, LND and CLN invoice APIs for ``httpx.MockTransport``.

Each fake answers with the exact JSON shapes of the real API (field names, string-encoded int64s,
base64 hashes, BTCPay's upper-case ``BOLT11``) and signs REAL BOLT11 invoices with a fixed test
node key, so the station's decoding and checks run for real. Knobs make a fake misbehave the way
a broken or hostile source would: sign another amount, report another payment hash, answer a
status code, hang, or send a huge body.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from station.demo.signer import sign_invoice

# A fixed TEST node key for the fakes (any valid secp256k1 scalar; never a real node's key).
FAKE_NODE_KEY = hashlib.sha256(b"tests/invoices fake node key").hexdigest()
KEY = "sEcReT-kEy-4f1e2d3c"  # what every fake expects; must never show in a message
MACAROON = "0201036c6e6402f801030a10" + "ab" * 40  # hex, as LND's REST wants it
STORE = "8Xz1StoreId"


@dataclass
class _Made:
    preimage: str
    payment_hash: str
    bolt11: str
    amount_msat: int
    memo: str
    expires_at: int
    label: str
    paid: bool = False
    cancelled: bool = False


@dataclass
class FakeNode:
    """State and knobs shared by every fake API."""

    kind: str
    sign_amount_delta: int = 0  # sign the BOLT11 for amount + delta
    report_other_hash: bool = False  # report a payment hash that is not the BOLT11's
    report_other_amount: bool = False  # report an amount that is not the one asked
    bad_bolt11: bool = False  # answer with a string that is not a BOLT11
    fail_status: int | None = None  # answer every request with this status
    timeout: bool = False  # raise a read timeout instead of answering
    huge_body: bool = False  # stream a 10 MB body
    wrong_preimage: bool = False  # report a paid invoice with a preimage of another hash
    echo_key: bool = False  # put the key in the error text (a hostile or careless server)
    made: dict[str, _Made] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    # --- what the tests drive ---------------------------------------------------------------

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)

    def settle(self, payment_hash: str) -> None:
        self.made[payment_hash].paid = True

    def cancel(self, payment_hash: str) -> None:
        self.made[payment_hash].cancelled = True

    def expire(self, payment_hash: str) -> None:
        self.made[payment_hash].expires_at = int(time.time()) - 1

    # --- shared mechanics --------------------------------------------------------------------

    def _make(self, amount_msat: int, memo: str, expiry: int) -> _Made:
        preimage = secrets.token_bytes(32)
        payment_hash = hashlib.sha256(preimage).hexdigest()
        text = sign_invoice(
            amount_msat=amount_msat + self.sign_amount_delta,
            payment_hash=payment_hash,
            description=memo,
            expiry_s=expiry,
            private_key=FAKE_NODE_KEY,
        )
        if self.bad_bolt11:
            text = "lnbc1notaninvoice"
        made = _Made(
            preimage=preimage.hex(),
            payment_hash=payment_hash,
            bolt11=text,
            amount_msat=amount_msat,
            memo=memo,
            expires_at=int(time.time()) + expiry,
            label=f"inv-{len(self.made) + 1}",
        )
        self.made[payment_hash] = made
        return made

    def _said_hash(self, made: _Made) -> str:
        return "ff" * 32 if self.report_other_hash else made.payment_hash

    def _said_amount(self, made: _Made) -> int:
        return made.amount_msat + 1000 if self.report_other_amount else made.amount_msat

    def _status(self, made: _Made) -> str:
        if made.paid:
            return "paid"
        if made.cancelled or made.expires_at <= time.time():
            return "expired"
        return "unpaid"

    def _preimage(self, made: _Made) -> str:
        return secrets.token_hex(32) if self.wrong_preimage else made.preimage

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.timeout:
            raise httpx.ReadTimeout("timed out", request=request)
        if self.huge_body:
            return httpx.Response(200, content=iter([b"{" + b" " * 1024 * 1024] * 10))
        sent = self._sent_key(request)
        if self.fail_status is not None:
            return self._failure(self.fail_status, sent)
        if not self._authorised(request):
            return self._failure(401, sent)
        body = json.loads(request.content) if request.content else None
        return getattr(self, f"_{self.kind}")(request, body)

    def _sent_key(self, request: httpx.Request) -> str:
        header = {
            "btcpay": "authorization",
            "lnbits": "x-api-key",
            "lnd": "grpc-metadata-macaroon",
            "cln": "rune",
        }[self.kind]
        return request.headers.get(header, "").removeprefix("token ")

    def _authorised(self, request: httpx.Request) -> bool:
        return self._sent_key(request) == (MACAROON if self.kind == "lnd" else KEY)

    def _failure(self, status: int, sent: str) -> httpx.Response:
        secret = f" (you sent {sent})" if self.echo_key else ""
        if self.kind == "btcpay":
            if status == 403:
                body: Any = {
                    "code": "missing-permission",
                    "message": "Insufficient API Permissions. Please use an API key with "
                    "permission: btcpay.store.cancreatelightninginvoice" + secret,
                }
            elif status == 401:
                body = {
                    "code": "unauthenticated",
                    "message": "Authentication is required for accessing this endpoint" + secret,
                }
            else:
                body = {"code": "generic-error", "message": "Lightning node unavailable" + secret}
        elif self.kind == "lnbits":
            body = {"detail": ("Invalid key." if status in (401, 403) else "boom") + secret}
        elif self.kind == "lnd":
            # LND's REST gateway reports a refused macaroon as HTTP 500, gRPC code 2
            if status == 401:
                status = 500
                text = "verification failed: signature mismatch after caveat verification"
            else:
                text = "unable to reach the wallet"
            body = {"code": 2, "message": text + secret, "details": []}
        else:
            text = "Not authorized: Invalid rune" if status in (401, 403) else "boom"
            body = {"code": 1501 if status in (401, 403) else -1, "message": text + secret}
        return httpx.Response(status, json=body)

    # --- the four APIs -----------------------------------------------------------------------

    def _btcpay(self, request: httpx.Request, body: Any) -> httpx.Response:
        base = f"/api/v1/stores/{STORE}/lightning/BTC/invoices"
        path = request.url.path
        if request.method == "POST" and path == base:
            made = self._make(int(body["amount"]), body["description"], int(body["expiry"]))
            made.label = made.payment_hash  # LND-backed stores use the hash as invoice id
            return httpx.Response(200, json=self._btcpay_view(made))
        if request.method == "GET" and path.startswith(base + "/"):
            wanted = path.rsplit("/", 1)[1]
            for made in self.made.values():
                if made.label == wanted:
                    return httpx.Response(200, json=self._btcpay_view(made))
            return httpx.Response(
                404, json={"code": "invoice-not-found", "message": "Invoice not found"}
            )
        return httpx.Response(404, json={"code": "not-found", "message": "no route"})

    def _btcpay_view(self, made: _Made) -> dict[str, Any]:
        status = self._status(made)
        return {
            "id": made.label,
            "status": {"paid": "Paid", "unpaid": "Unpaid", "expired": "Expired"}[status],
            "BOLT11": made.bolt11,
            "paidAt": int(time.time()) if made.paid else None,
            "expiresAt": made.expires_at,
            "amount": str(self._said_amount(made)),
            "amountReceived": str(made.amount_msat) if made.paid else None,
            "paymentHash": self._said_hash(made),
            "preimage": self._preimage(made) if made.paid else None,
            "customRecords": None,
        }

    def _lnbits(self, request: httpx.Request, body: Any) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path == "/api/v1/payments":
            assert body["out"] is False and body["unit"] == "sat"
            made = self._make(int(body["amount"]) * 1000, body["memo"], int(body["expiry"]))
            return httpx.Response(201, json=self._lnbits_view(made))
        if request.method == "GET" and path.startswith("/api/v1/payments/"):
            made_or_none = self.made.get(path.rsplit("/", 1)[1])
            if made_or_none is None:
                return httpx.Response(404, json={"detail": "Payment does not exist."})
            made = made_or_none
            # LNbits hands out the preimage it holds even before payment: we must not use it
            return httpx.Response(
                200,
                json={
                    "paid": made.paid,
                    "preimage": self._preimage(made),
                    "details": self._lnbits_view(made),
                },
            )
        return httpx.Response(404, json={"detail": "Not Found"})

    def _lnbits_view(self, made: _Made) -> dict[str, Any]:
        return {
            "checking_id": made.payment_hash,
            "payment_hash": self._said_hash(made),
            "wallet_id": "8c5f0a0c1f3e4b0d9d3b",
            "amount": self._said_amount(made),
            "fee": 0,
            "bolt11": made.bolt11,
            "payment_request": made.bolt11,
            "status": "success" if made.paid else "pending",
            "memo": made.memo,
            "expiry": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(made.expires_at)),
            "webhook": None,
            "webhook_status": None,
            "preimage": None,
            "tag": None,
            "extension": None,
            "time": "2026-12-02T10:00:00",
            "created_at": "2026-12-02T10:00:00",
            "updated_at": "2026-12-02T10:00:00",
            "extra": {},
        }

    def _lnd(self, request: httpx.Request, body: Any) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path == "/v1/invoices":
            assert isinstance(body["value_msat"], str) and isinstance(body["expiry"], str)
            made = self._make(int(body["value_msat"]), body["memo"], int(body["expiry"]))
            return httpx.Response(
                200,
                json={
                    "r_hash": _b64(self._said_hash(made)),
                    "payment_request": made.bolt11,
                    "add_index": str(len(self.made)),
                    "payment_addr": _b64(secrets.token_hex(32)),
                },
            )
        if request.method == "GET" and path.startswith("/v1/invoice/"):
            made_or_none = self.made.get(path.rsplit("/", 1)[1])
            if made_or_none is None:
                return httpx.Response(
                    404, json={"code": 5, "message": "unable to locate invoice", "details": []}
                )
            made = made_or_none
            state = "SETTLED" if made.paid else "CANCELED" if made.cancelled else "OPEN"
            return httpx.Response(
                200,
                json={
                    "memo": made.memo,
                    "r_preimage": _b64(self._preimage(made)),  # LND sends it in every state
                    "r_hash": _b64(made.payment_hash),
                    "value": str(made.amount_msat // 1000),
                    "value_msat": str(made.amount_msat),
                    "settled": made.paid,
                    "creation_date": str(int(time.time())),
                    "settle_date": str(int(time.time())) if made.paid else "0",
                    "payment_request": made.bolt11,
                    "description_hash": None,
                    "expiry": "600",
                    "fallback_addr": "",
                    "cltv_expiry": "80",
                    "route_hints": [],
                    "private": False,
                    "add_index": "1",
                    "settle_index": "1" if made.paid else "0",
                    "amt_paid": "0",
                    "amt_paid_sat": str(made.amount_msat // 1000) if made.paid else "0",
                    "amt_paid_msat": str(made.amount_msat) if made.paid else "0",
                    "state": state,
                    "htlcs": [],
                    "features": {},
                    "is_keysend": False,
                    "payment_addr": _b64(secrets.token_hex(32)),
                    "is_amp": False,
                    "amp_invoice_state": {},
                },
            )
        return httpx.Response(404, json={"code": 5, "message": "Not Found", "details": []})

    def _cln(self, request: httpx.Request, body: Any) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path == "/v1/invoice":
            assert isinstance(body["amount_msat"], int) and body["label"].startswith("station-")
            if any(m.label == body["label"] for m in self.made.values()):
                return httpx.Response(
                    500,
                    json={"code": 900, "message": "Duplicate label '" + body["label"] + "'"},
                )
            made = self._make(body["amount_msat"], body["description"], body["expiry"])
            made.label = body["label"]
            return httpx.Response(
                201,
                json={
                    "payment_hash": self._said_hash(made),
                    "expires_at": made.expires_at,
                    "bolt11": made.bolt11,
                    "payment_secret": secrets.token_hex(32),
                    "created_index": len(self.made),
                },
            )
        if request.method == "POST" and path == "/v1/listinvoices":
            made_or_none = self.made.get(body["payment_hash"])
            if made_or_none is None:
                return httpx.Response(201, json={"invoices": []})
            made = made_or_none
            item: dict[str, Any] = {
                "label": made.label,
                "bolt11": made.bolt11,
                "payment_hash": made.payment_hash,
                "amount_msat": made.amount_msat,
                "status": self._status(made),
                "description": made.memo,
                "expires_at": made.expires_at,
                "created_index": 1,
            }
            if made.paid:
                item.update(
                    pay_index=1,
                    amount_received_msat=made.amount_msat,
                    paid_at=int(time.time()),
                    payment_preimage=self._preimage(made),
                    updated_index=2,
                )
            return httpx.Response(201, json={"invoices": [item]})
        return httpx.Response(404, json={"code": -32601, "message": "Unknown command"})


def _b64(hex_value: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_value)).decode()
