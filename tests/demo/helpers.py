"""Helpers for the demo-issuer tests: invoices, taps, a fake payer and a tiny LNbits-API peer."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import bolt11
from bolt11.models.tags import Tag, TagChar, Tags
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from station.demo.books import PullPayment
from station.demo.issuer import IssuerConfig, create_app, issuer_of, serve_in_thread
from station.demo.payer import PayError, PayResult
from station.ntag424 import sun

NODE_KEY = "11" * 32
ISSUER_KEY = bytes.fromhex("00000000000000000000000000000001")
UID = bytes.fromhex("04a39493cc8680")
API_KEY = "demo-api-key-0123456789"


def invoice(amount_msat: int | None, *, expiry: int = 600, age_s: int = 0) -> tuple[str, str]:
    """(bolt11, payment hash) signed with a fixed regtest node key; ``preimage`` is sha256'd."""
    preimage = os.urandom(32)
    payment_hash = hashlib.sha256(preimage).hexdigest()
    tags = Tags(
        [
            Tag(TagChar.payment_hash, payment_hash),
            Tag(TagChar.description, "coffee"),
            Tag(TagChar.expire_time, expiry),
            Tag(TagChar.payment_secret, os.urandom(32).hex()),
        ]
    )
    date = int(time.time()) - age_s
    text = bolt11.encode(bolt11.Bolt11("bcrt", date, tags, amount_msat), NODE_KEY)
    return text, payment_hash


@dataclass
class Tapper:
    """Makes the SUN values a card with these keys would mirror, counter by counter."""

    k1: bytes
    k2: bytes
    uid: bytes = UID
    counter: int = 0

    def tap(self) -> tuple[str, str]:
        self.counter += 1
        params = sun.compute_sun(self.k1, self.k2, self.uid, self.counter)
        return params.picc_enc_data.hex().upper(), params.sdmmac.hex().upper()


@dataclass
class FakePayer:
    """An in-process payer: settles at once, after ``delay_s``, or fails with ``fail``."""

    delay_s: float = 0.0
    fail: str | None = None
    paid: list[str] = field(default_factory=list)

    async def pay(self, bolt11_text: str, payment_hash: str) -> PayResult:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail:
            raise PayError(self.fail)
        self.paid.append(payment_hash)
        return PayResult(payment_hash, "ab" * 32)


def fake_lnbits(admin_key: str, *, include_preimage: bool = False) -> FastAPI:
    """The two LNbits routes the payer uses, with LNbits' answer shapes."""
    app = FastAPI()
    paid: dict[str, str] = {}
    app.state.paid = paid

    @app.post("/api/v1/payments")
    async def pay(request: Request) -> JSONResponse:
        if request.headers.get("x-api-key") != admin_key:
            return JSONResponse({"detail": "Invalid adminkey."}, status_code=401)
        body = await request.json()
        if body.get("out") is not True:
            return JSONResponse({"detail": "only out payments here"}, status_code=400)
        decoded = bolt11.decode(body["bolt11"])
        if decoded.amount_msat and decoded.amount_msat > 1_000_000:
            return JSONResponse({"detail": "Insufficient balance."}, status_code=400)
        paid[decoded.payment_hash] = "cd" * 32
        answer: dict[str, Any] = {
            "payment_hash": decoded.payment_hash,
            "checking_id": decoded.payment_hash,
            "status": "success",
        }
        if include_preimage:
            answer["preimage"] = paid[decoded.payment_hash]
        return JSONResponse(answer, status_code=201)

    @app.get("/api/v1/payments/{payment_hash}")
    async def lookup(payment_hash: str, request: Request) -> JSONResponse:
        if request.headers.get("x-api-key") != admin_key:
            return JSONResponse({"detail": "Invalid key."}, status_code=401)
        if payment_hash not in paid:
            return JSONResponse({"detail": "Payment does not exist."}, status_code=404)
        return JSONResponse({"paid": True, "preimage": paid[payment_hash], "details": {}})

    return app


def config(**overrides: Any) -> IssuerConfig:
    base: dict[str, Any] = {
        "payer": FakePayer(),
        "pull_payments": [PullPayment("pp1", "Conference", 2_100_000)],
        "issuer_key": ISSUER_KEY,
        "api_keys": [API_KEY],
    }
    base.update(overrides)
    return IssuerConfig(**base)


@contextmanager
def running(cfg: IssuerConfig) -> Iterator[tuple[str, Any]]:
    """The issuer on loopback: (base_url, Issuer)."""
    app = create_app(cfg)
    base, stop = serve_in_thread(app)
    try:
        yield base, issuer_of(app)
    finally:
        stop()
