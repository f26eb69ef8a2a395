"""The demo wallet: a TEST PEER that speaks the subset of LNbits' HTTP API the station uses.

It signs real BOLT11 invoices (regtest, with the published test node key in ``signer.py``) and
settles payments between its own wallets, so ``make demo`` and the end-to-end tests run the
station's real LNbits client against it. It is not a Lightning wallet: it cannot pay or receive
anything outside itself. Every answer carries the header ``X-Test-Peer``.

Endpoints (``X-Api-Key`` = a wallet's invoice key or admin key):

- ``POST /api/v1/payments`` ``{"out": false, "amount": <sat>, "unit": "sat", "memo", "expiry"}``
  → 201 ``{"payment_hash", "payment_request", "bolt11", "checking_id", "amount" (msat),
  "status": "pending", …}``
- ``POST /api/v1/payments`` ``{"out": true, "bolt11"}`` (admin key) → 201 ``{"payment_hash",
  "checking_id", "status": "success", …}``; 400 invalid or expired invoice, 401 not the admin key,
  520 unknown invoice (we cannot route), already paid, insufficient balance.
- ``GET /api/v1/payments/{payment_hash}`` → ``{"paid", "preimage" (only once paid), "details"}``
  for the wallet that made or paid it; 404 for anybody else.
- ``GET /api/v1/wallet`` → ``{"id", "name", "balance" (msat)}``.

Start it: ``python -m station.demo.wallet --port 5001 --state var/demo-wallet.json`` (prints the
URL and where the keys are), or in-process with ``serve_in_thread(create_app([...]))``.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from station.serve import serve_in_thread

from .ledger import DEFAULT_EXPIRY_S, Ledger, WalletConfig, WalletError

TEST_PEER_HEADER = "X-Test-Peer"
TEST_PEER_LABEL = "boltcard-station demo wallet (test peer, play money, not Lightning)"
MAX_REQUEST_BYTES = 16 * 1024

__all__ = ["Ledger", "WalletConfig", "create_app", "demo_wallets", "serve_in_thread"]


def create_app(
    wallets: Sequence[WalletConfig],
    *,
    state_path: Path | None = None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The demo wallet as an ASGI app; ``app.state.ledger`` is its :class:`Ledger`."""
    ledger = Ledger(wallets, state_path=state_path, clock=clock)
    app = FastAPI(
        title="Demo wallet (TEST PEER)",
        description=TEST_PEER_LABEL,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.ledger = ledger

    @app.middleware("http")
    async def label(request: Request, call_next: Callable[[Request], Any]) -> Response:
        response: Response = await call_next(request)
        response.headers[TEST_PEER_HEADER] = TEST_PEER_LABEL
        return response

    @app.exception_handler(WalletError)
    async def refused(_request: Request, exc: WalletError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.get("/")
    async def about() -> dict[str, Any]:
        return {"name": TEST_PEER_LABEL, "test_peer": True, "api": "LNbits subset"}

    @app.post("/api/v1/payments", status_code=201)
    async def payments(request: Request) -> dict[str, Any]:
        caller = ledger.caller(request.headers.get("x-api-key"))
        body = await _json_body(request)
        out = body.get("out", True)  # LNbits' default: a body without "out" means paying
        if not isinstance(out, bool):
            raise WalletError(422, "out must be true or false")
        if out:
            text = body.get("bolt11")
            if not isinstance(text, str):
                raise WalletError(400, "BOLT11 string is invalid or not given.")
            return ledger.pay(caller, text.strip())
        amount = body.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise WalletError(422, "amount must be a whole number of sats")
        if body.get("unit", "sat") != "sat":
            raise WalletError(400, "the demo wallet only takes unit 'sat'")
        memo = body.get("memo") or ""
        expiry = body.get("expiry") or DEFAULT_EXPIRY_S
        if not isinstance(memo, str):
            raise WalletError(422, "memo must be a string")
        if isinstance(expiry, bool) or not isinstance(expiry, int):
            raise WalletError(422, "expiry must be whole seconds")
        return ledger.create_invoice(caller, amount, memo, expiry)

    @app.get("/api/v1/payments/{payment_hash}")
    async def payment(payment_hash: str, request: Request) -> dict[str, Any]:
        caller = ledger.caller(request.headers.get("x-api-key"))
        return ledger.payment(caller, payment_hash[:64] if len(payment_hash) <= 64 else "")

    @app.get("/api/v1/wallet")
    async def wallet(request: Request) -> dict[str, Any]:
        return ledger.wallet(ledger.caller(request.headers.get("x-api-key")))

    return app


async def _json_body(request: Request) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_REQUEST_BYTES):
        raise WalletError(413, f"request body larger than {MAX_REQUEST_BYTES} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_REQUEST_BYTES:
            raise WalletError(413, f"request body larger than {MAX_REQUEST_BYTES} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WalletError(400, "the body must be a JSON object") from exc
    if not isinstance(body, dict):
        raise WalletError(400, "the body must be a JSON object")
    return body


def demo_wallets(balance_sat: int = 1_000_000) -> list[WalletConfig]:
    """Two fresh wallets: ``merchant`` (the station's invoices land here) and ``issuer`` (pays
    the claims, funded with ``balance_sat``). Keys are random each time."""
    return [
        WalletConfig("merchant", secrets.token_hex(16), secrets.token_hex(16), 0),
        WalletConfig("issuer", secrets.token_hex(16), secrets.token_hex(16), balance_sat * 1000),
    ]


def _wallets_from(path: Path) -> list[WalletConfig]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return [WalletConfig(**item) for item in data["wallets"]]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m station.demo.wallet", description=f"Run the {TEST_PEER_LABEL}."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state", type=Path, help="JSON file that keeps balances and invoices")
    parser.add_argument(
        "--keys", type=Path, help="wallets file (made with fresh keys if it does not exist)"
    )
    args = parser.parse_args(argv)
    keys_path: Path | None = args.keys
    if keys_path is not None and keys_path.exists():
        wallets = _wallets_from(keys_path)
    else:
        wallets = demo_wallets()
        if keys_path is not None:
            keys_path.parent.mkdir(parents=True, exist_ok=True)
            keys_path.touch(mode=0o600)
            keys_path.write_text(
                json.dumps(
                    {
                        "note": "demo wallet keys (TEST PEER, play money)",
                        "wallets": [
                            {
                                "name": w.name,
                                "invoice_key": w.invoice_key,
                                "admin_key": w.admin_key,
                                "balance_msat": w.balance_msat,
                            }
                            for w in wallets
                        ],
                    },
                    indent=2,
                ),
                encoding="utf-8",
            )
    app = create_app(wallets, state_path=args.state)
    url, stop = serve_in_thread(app, args.host, args.port)
    where = f"keys in {keys_path}" if keys_path else "keys not saved (use --keys FILE)"
    print(f"{TEST_PEER_LABEL} at {url}; wallets {[w.name for w in wallets]}; {where}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
