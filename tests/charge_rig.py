"""The money side of a tap, on loopback: the demo wallet (LNbits API), the demo issuer (BTCPay's
Bolt Card endpoint) paying from its own wallet there, and an emulated Bolt Card provisioned with
the LNURLW and keys the issuer handed out when the card was linked to its pull payment.

The station under test then charges the card exactly as it would a real one: its LNbits invoice
source asks the wallet for the merchant's invoice, its LNURL client claims it at the issuer, and
the issuer pays it through the wallet's API. Both peers are the project's TEST PEERS.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from station.demo.books import PullPayment
from station.demo.issuer import IssuerConfig, create_app, issuer_of
from station.demo.issuer import serve_in_thread as serve_issuer
from station.demo.payer import LnbitsPayer
from station.demo.wallet import WalletConfig
from station.demo.wallet import create_app as create_wallet
from station.emulator import store
from station.ntag424 import flows
from station.ntag424.keys import KeySet
from station.ntag424.ndef import bolt_card_template
from station.serve import serve_in_thread

ISSUER_KEY = bytes.fromhex("0c0ffee00c0ffee00c0ffee00c0ffee0")
UID = bytes.fromhex("04C0FFEE000001")
MERCHANT = WalletConfig("merchant", "merchant-invoice-key", "merchant-admin-key", 0)
ISSUER_WALLET = WalletConfig("issuer", "issuer-invoice-key", "issuer-admin-key", 50_000_000)
API_KEY = "demo-issuer-api-key-123"


@dataclass
class ChargeRig:
    wallet_url: str
    issuer_url: str
    card_state: Path
    lnurlw: str
    issuer: Any  # station.demo.issuer.Issuer: fault switches in .faults
    outbox: Path
    env: dict[str, str] = field(default_factory=dict)
    counter: RequestCounter = field(default_factory=lambda: RequestCounter(None))
    wallet_counter: RequestCounter = field(default_factory=lambda: RequestCounter(None))
    stop_issuer: Callable[[], None] = field(default=lambda: None, repr=False)

    @property
    def callbacks(self) -> int:
        """How many claim callbacks (``GET /boltcard`` with ``pr=``) reached the issuer."""
        return self.counter.callbacks

    @property
    def invoices_made(self) -> int:
        """How many invoices the merchant's key asked the demo wallet for."""
        return self.wallet_counter.merchant_invoices

    def merchant_balance_msat(self) -> int:
        got = httpx.get(f"{self.wallet_url}/api/v1/wallet",
                        headers={"X-Api-Key": MERCHANT.invoice_key}, trust_env=False)
        return int(got.json()["balance"])

    def station_env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STATION_")}
        env.update(self.env)
        env.update(extra)
        return env


class RequestCounter:
    """ASGI wrapper around a peer counting what it was asked: at the issuer, the requests that
    carry a claim (``pr=``) — the "never sent twice" promise is checked on what the issuer saw,
    not on what the station says; at the wallet, the invoices the merchant's key asked for."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.callbacks = 0
        self.fetches = 0
        self.merchant_invoices = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope.get("path")
            if path == "/boltcard":
                if b"pr=" in scope.get("query_string", b""):
                    self.callbacks += 1
                else:
                    self.fetches += 1
            elif path == "/api/v1/payments" and scope.get("method") == "POST":
                key = dict(scope.get("headers", [])).get(b"x-api-key", b"")
                if key == MERCHANT.invoice_key.encode():
                    self.merchant_invoices += 1
        await self.app(scope, receive, send)


def link_card(issuer_url: str, uid: bytes, pull_payment: str = "pp1") -> dict[str, Any]:
    """Link a card to the pull payment the way BTCPay does (``POST …/boltcards``)."""
    got = httpx.post(f"{issuer_url}/api/v1/pull-payments/{pull_payment}/boltcards",
                     json={"UID": uid.hex().upper(), "onExisting": "UpdateVersion"},
                     trust_env=False)
    got.raise_for_status()
    return dict(got.json())


def provision(path: Path, uid: bytes, answer: dict[str, Any]) -> None:
    """A factory-fresh emulated card programmed with the issuer's LNURLW and keys."""
    card, _ = store.load_or_create(path, uid, save_new=False)
    version = int(answer.get("version", 1))
    keys = KeySet(*(bytes.fromhex(answer[f"K{i}"]) for i in range(5)), version=version)
    flows.drive(
        flows.provision_bolt_card(bolt_card_template(answer["LNURLW"]), keys, os.urandom,
                                  key_version=version),
        card.transceive,
    )
    store.save(path, card)


@contextmanager
def charge_rig(tmp: Path, *, balance_msat: int = 2_100_000, **issuer: Any) -> Iterator[ChargeRig]:
    wallet_counter = RequestCounter(create_wallet([MERCHANT, ISSUER_WALLET]))
    wallet_url, stop_wallet = serve_in_thread(wallet_counter)
    issuer.setdefault("payer", LnbitsPayer(wallet_url, ISSUER_WALLET.admin_key))
    cfg = IssuerConfig(
        pull_payments=[PullPayment("pp1", "Shop pull payment", balance_msat)],
        issuer_key=ISSUER_KEY, api_keys=[API_KEY], pay_timeout_s=5.0, **issuer,
    )
    app = create_app(cfg)
    counter = RequestCounter(app)
    issuer_url, stop_issuer = serve_issuer(counter)  # type: ignore[arg-type]
    try:
        answer = link_card(issuer_url, UID)
        state = tmp / "card.json"
        provision(state, UID, answer)
        outbox = tmp / "outbox.sqlite"
        env = {
            "STATION_NAME": "till-test",
            "STATION_ISSUER_KEY": ISSUER_KEY.hex(),
            "STATION_ALLOWED_HOSTS": "127.0.0.1",
            "STATION_INSECURE_HOSTS": "127.0.0.1",
            "STATION_INVOICE_SOURCE": "lnbits",
            "STATION_INVOICE_URL": wallet_url,
            "STATION_INVOICE_KEY": MERCHANT.invoice_key,
            "STATION_OUTBOX": str(outbox),
            "STATION_READERS": "emulated",
            "STATION_DEBOUNCE": "0",
        }
        yield ChargeRig(wallet_url, issuer_url, state, answer["LNURLW"], issuer_of(app),
                        outbox, env, counter, wallet_counter, stop_issuer)
    finally:
        stop_issuer()
        stop_wallet()
