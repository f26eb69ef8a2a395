"""The demo issuer: a TEST PEER that behaves like BTCPay Server's pull-payment Boltcard endpoint.

Never a production issuer: it keeps its books in memory, registers cards without auth (as
BTCPay's own endpoint does) and exists so that the station's real LNURL-withdraw client, the
tracker's real BTCPay client and ``make demo`` have a peer on loopback. Every answer carries
``X-Demo-Issuer: test peer`` and its startup log line says so.

What it does (BTCPay's behaviour, verified in firmware_notes/btcpay-boltcard.md):

* ``GET /boltcard?p=&c=`` verifies SUN with the project's core and answers a withdrawRequest
  (``k1 = "<p>-<c>"``, callback = the same URL); refusals are ``{"status": "ERROR"}`` with
  HTTP 400.
* The callback ``GET /boltcard?p=&c=&k1=&pr=[&pin=]`` checks the BOLT11 (amount within bounds,
  not expired, not a duplicate), advances the card's counter (only this request moves it),
  creates a payout whose destination is the BOLT11 and pays it through a :class:`Payer`;
  ``OK`` once paid, ``OK`` with a pending reason after ``pay_timeout_s``, else ERROR.
* Greenfield: pull payment creation, store payouts listing/lookup (``Authorization: token``),
  card registration with deterministic keys; payout webhooks signed with ``BTCPay-Sig``.

Fault switches (``IssuerConfig``, changeable at run time on ``Issuer.faults``): ``slow_callback_s``
sleeps after paying and before answering, ``drop_callback`` pays and then closes the connection
without a complete answer, ``garbage`` answers ``/boltcard`` with non-JSON.

Secrets: p/c, k1, PINs and preimages never reach a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import bolt11
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from station.demo.books import (
    Card,
    ClaimRefused,
    Ledger,
    Payout,
    PullPayment,
    TapRefused,
    VerifiedTap,
    new_id,
)
from station.demo.payer import Payer, PayError
from station.demo.webhooks import DEFAULT_RETRY_DELAYS_S, WebhookSender, WebhookTarget
from station.ntag424 import keys as keymod
from station.serve import serve_in_thread as serve

__all__ = [
    "CardConfig",
    "Faults",
    "Issuer",
    "IssuerConfig",
    "create_app",
    "issuer_of",
    "serve_in_thread",
]

log = logging.getLogger("station.demo.issuer")

TEST_PEER_HEADER = (b"x-demo-issuer", b"test peer")
PENDING_REASON = "Payment pending, the payout will complete in the background"
_BOLTCARD_PARAMS = ("p", "c", "k1", "pr", "pin")


@dataclass(slots=True)
class Faults:
    """Misbehaviour for tests; change these on a running issuer through ``Issuer.faults``."""

    slow_callback_s: float = 0.0
    drop_callback: bool = False
    garbage: bool = False


@dataclass(slots=True, repr=False)
class CardConfig:
    """A card known at start: its own keys (``keys`` or a ``new_bolt_card_response`` in
    ``program``) or, with neither, keys derived from the issuer key."""

    uid: str
    pull_payment_id: str
    keys: keymod.KeySet | None = None
    program: Mapping[str, Any] | str | None = None
    pin: str | None = None
    pin_limit_msat: int = 1000
    counter: int = 0

    def __repr__(self) -> str:
        return f"CardConfig(uid={self.uid}, pp={self.pull_payment_id!r})"


@dataclass(slots=True, repr=False)
class IssuerConfig:
    """Everything :func:`create_app` needs; the defaults make a usable loopback peer."""

    payer: Payer | None = None
    pull_payments: Sequence[PullPayment] = ()
    cards: Sequence[CardConfig] = ()
    issuer_key: bytes | None = None
    first_key_version: int = keymod.DEFAULT_VERSION
    store_id: str = "demo-store"
    api_keys: Sequence[str] = ()
    public_url: str | None = None
    """``http://host:port`` the LNURLW and callbacks point to; ``None``: the request's host."""
    webhooks: Sequence[WebhookTarget] = ()
    webhook_retry_delays_s: Sequence[float] = DEFAULT_RETRY_DELAYS_S
    pay_timeout_s: float = 10.0
    min_withdrawable_msat: int = 1000
    slow_callback_s: float = 0.0
    drop_callback: bool = False
    garbage: bool = False
    max_query_chars: int = 4096
    max_body_bytes: int = 16 * 1024

    def __repr__(self) -> str:
        return f"IssuerConfig(store_id={self.store_id!r}, secrets=<redacted>)"


def _error(reason: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"status": "ERROR", "reason": reason}, status_code=status)


def _api_error(code: str, message: str, status: int) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def _unauthenticated() -> JSONResponse:
    return _api_error(
        "unauthenticated", "Authentication is required for accessing this endpoint", 401
    )


def _parse_uid(text: object) -> bytes | None:
    if not isinstance(text, str) or len(text) != 14:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


class Issuer:
    """The running peer: ledger, payer, webhooks, faults and the background payments."""

    def __init__(self, config: IssuerConfig) -> None:
        self.config = config
        self.faults = Faults(config.slow_callback_s, config.drop_callback, config.garbage)
        self.ledger = Ledger(
            store_id=config.store_id,
            issuer_key=config.issuer_key,
            first_key_version=config.first_key_version,
            min_withdrawable_msat=config.min_withdrawable_msat,
        )
        for pp in config.pull_payments:
            self.ledger.add_pull_payment(pp)
        for card in config.cards:
            self._add_configured_card(card)
        self.webhooks = WebhookSender(config.webhooks, retry_delays_s=config.webhook_retry_delays_s)
        if config.webhooks:
            self.ledger.add_listener(self.webhooks)
        self._tasks: set[asyncio.Task[Any]] = set()

    def _add_configured_card(self, card: CardConfig) -> None:
        uid = _parse_uid(card.uid)
        if uid is None:
            raise ValueError("a card UID is 14 hex digits")
        keys = card.keys
        if keys is None and card.program is not None:
            keys = keymod.parse_new_bolt_card_response(card.program).keys
        self.ledger.add_card(
            uid,
            card.pull_payment_id,
            keys=keys,
            pin=card.pin,
            pin_limit_msat=card.pin_limit_msat,
            counter=card.counter,
        )

    # -- lifecycle -----------------------------------------------------------------------------

    async def startup(self) -> None:
        log.warning(
            "demo issuer started: a TEST PEER, not a production issuer (store %s, %d webhooks)",
            self.config.store_id,
            len(self.config.webhooks),
        )
        self.webhooks.start()

    async def shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        aclose = getattr(self.config.payer, "aclose", None)
        if aclose is not None:
            await aclose()
        await asyncio.to_thread(self.webhooks.stop)

    async def drain(self) -> None:
        """Wait for background payments (tests)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- URLs ----------------------------------------------------------------------------------

    def base_url(self, request: Request) -> str:
        if self.config.public_url:
            return self.config.public_url.rstrip("/")
        return str(request.base_url).rstrip("/")

    def lnurlw(self, request: Request) -> str:
        base = self.base_url(request)
        return "lnurlw://" + base.split("://", 1)[-1] + "/boltcard"

    # -- paying --------------------------------------------------------------------------------

    async def _pay(self, payout: Payout) -> str | None:
        """Pay and settle the payout; the payer's reason when it failed, else ``None``."""
        payer = self.config.payer
        assert payer is not None
        try:
            result = await payer.pay(payout.destination, payout.payment_hash)
        except PayError as exc:
            self.ledger.settle(payout.id, ok=False)
            log.info("payout %s cancelled: %s", payout.id, exc.reason)
            return exc.reason
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a broken payer must not leave the payout in flight forever
            self.ledger.settle(payout.id, ok=False)
            log.warning("payout %s cancelled: payer raised %s", payout.id, type(exc).__name__)
            return "Payment failed at the issuer's wallet"
        self.ledger.settle(payout.id, ok=True, preimage=result.preimage)
        log.info("payout %s completed (%d msat)", payout.id, payout.amount_msat)
        return None

    async def pay_within_timeout(self, payout: Payout) -> tuple[bool, str | None]:
        """(done, failure reason). Not done within ``pay_timeout_s``: it goes on in background."""
        if self.config.payer is None:
            return False, None
        task = asyncio.create_task(self._pay(payout))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        done, _ = await asyncio.wait({task}, timeout=self.config.pay_timeout_s)
        if not done:
            return False, None
        return True, task.result()


def issuer_of(app: FastAPI) -> Issuer:
    """The :class:`Issuer` behind an app made by :func:`create_app`."""
    issuer: Issuer = app.state.issuer
    return issuer


class _Guard:
    """Pure ASGI middleware: size limits and the test-peer header on every answer."""

    def __init__(self, app: ASGIApp, max_query: int, max_body: int) -> None:
        self.app = app
        self.max_query = max_query
        self.max_body = max_body

    async def _reject(self, send: Send, status: int, message: str) -> None:
        body = b'{"status":"ERROR","reason":"' + message.encode() + b'"}'
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    TEST_PEER_HEADER,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if len(scope.get("query_string", b"")) > self.max_query:
            await self._reject(send, 414, "Query string too long")
            return
        headers = dict(scope.get("headers", []))
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.max_body:
                await self._reject(send, 413, "Request body too large")
                return
        elif b"chunked" in headers.get(b"transfer-encoding", b""):
            await self._reject(send, 411, "Content-Length required")
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), TEST_PEER_HEADER]}
            await send(message)

        await self.app(scope, receive, send_with_header)


class _DroppedAnswer(Response):
    """Starts an answer and never finishes it: the client sees the connection close."""

    def __init__(self) -> None:
        super().__init__(content=b"")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"status":', "more_body": True})
        # Returning now, body incomplete: uvicorn closes the connection.


def _garbage() -> Response:
    return Response(b"<html><body>502 Bad Gateway</body></html>", media_type="text/html")


def create_app(config: IssuerConfig) -> FastAPI:
    """Build the demo issuer app (a TEST PEER) from ``config``."""
    issuer = Issuer(config)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        await issuer.startup()
        yield
        await issuer.shutdown()

    app = FastAPI(
        title="Demo issuer (TEST PEER, not a production issuer)",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.issuer = issuer

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, __: RequestValidationError) -> JSONResponse:
        return _api_error("validation-error", "The request is not valid", 400)

    def authorized(request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "token" or not token:
            return False
        return any(hmac.compare_digest(token.encode(), key.encode()) for key in config.api_keys)

    def store_guard(request: Request, store_id: str) -> JSONResponse | None:
        if not authorized(request):
            return _unauthenticated()
        if store_id != config.store_id:
            return _api_error("store-not-found", "The store was not found", 404)
        return None

    # -- LNURL-withdraw ----------------------------------------------------------------------

    @app.get("/boltcard")
    async def boltcard(request: Request) -> Response:
        params: dict[str, str] = {}
        for name, value in request.query_params.multi_items():
            if name in _BOLTCARD_PARAMS:
                if name in params:
                    return _error(f"Parameter {name} given twice")
                params[name] = value
        answer = await _boltcard(request, params)
        if issuer.faults.garbage:
            return _garbage()
        return answer

    async def _boltcard(request: Request, q: dict[str, str]) -> Response:
        p, c, k1, pr = q.get("p"), q.get("c"), q.get("k1"), q.get("pr")
        if p is None or c is None:
            parts = (k1 or "").split("-")
            if len(parts) != 2:
                return _error("Missing p, c, or k1 query parameter")
            p, c = parts
        try:
            tap = issuer.ledger.verify(p, c)
        except TapRefused as exc:
            return _error(exc.reason)
        pp = tap.pull_payment
        remaining = issuer.ledger.remaining_msat(pp)
        minimum = min(config.min_withdrawable_msat, remaining)
        if pr is None:
            callback = f"{issuer.base_url(request)}/boltcard?p={p}&c={c}"
            body: dict[str, Any] = {
                "tag": "withdrawRequest",
                "callback": callback,
                "k1": f"{p}-{c}",
                "defaultDescription": pp.name,
                "minWithdrawable": minimum,
                "maxWithdrawable": remaining,
                "currentBalance": remaining,
                "balanceCheck": callback,
            }
            if tap.card.pin is not None:
                body["pinLimit"] = tap.card.pin_limit_msat
            return JSONResponse(body)
        return await _callback(tap, p, c, k1, pr, q.get("pin"), minimum, remaining)

    async def _callback(
        tap: VerifiedTap,
        p: str,
        c: str,
        k1: str | None,
        pr: str,
        pin: str | None,
        minimum: int,
        remaining: int,
    ) -> Response:
        short = tap.uid.hex()[:6]
        if k1 is None or not hmac.compare_digest(k1.encode(), f"{p}-{c}".encode()):
            return _error("k1 does not match this tap")
        if pin is not None and not (pin.isdigit() and len(pin) <= 8):
            return _error("A PIN is 4 to 8 digits")
        try:
            invoice = bolt11.decode(pr.strip())
        except Exception:  # bolt11 raises several types for malformed text
            return _error("Payment request was not a valid BOLT11")
        amount = invoice.amount_msat or 0
        if not minimum <= amount <= remaining or amount <= 0:
            low, high = _sats(minimum), _sats(remaining)
            return _error(f"Payment request was not within bounds ({low} - {high} sats)")
        if invoice.has_expired():
            return _error("Payment request could not be paid (Claim result: Expired)")
        try:
            payout = issuer.ledger.claim(
                tap,
                bolt11=pr.strip(),
                payment_hash=invoice.payment_hash,
                amount_msat=amount,
                pin=pin,
            )
        except ClaimRefused as exc:
            log.info("card %s… claim of %d msat refused: %s", short, amount, exc.reason)
            return _error(exc.reason)
        log.info("card %s… claimed %d msat: payout %s", short, amount, payout.id)
        done, failure = await issuer.pay_within_timeout(payout)
        if issuer.faults.slow_callback_s > 0:
            await asyncio.sleep(issuer.faults.slow_callback_s)
        if issuer.faults.drop_callback:
            return _DroppedAnswer()
        if done and failure is not None:
            return _error(failure)
        if not done:
            return JSONResponse({"status": "OK", "reason": PENDING_REASON})
        return JSONResponse({"status": "OK"})

    # -- cards ---------------------------------------------------------------------------------

    @app.post("/api/v1/pull-payments/{pp_id}/boltcards")
    async def register_boltcard(request: Request, pp_id: str) -> Response:
        if issuer.ledger.pull_payment(pp_id) is None:
            return _api_error("pullpayment-not-found", "The pull payment was not found", 404)
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _api_error("validation-error", "Expected a JSON object", 422)
        uid = _parse_uid(body.get("UID", body.get("uid")))
        if uid is None:
            return _api_error("validation-error", "The UID is required and should be 7 bytes", 422)
        on_existing = request.query_params.get("onExisting") or body.get("onExisting")
        if on_existing not in (None, "KeepVersion", "UpdateVersion"):
            return _api_error("validation-error", "onExisting is KeepVersion or UpdateVersion", 422)
        try:
            card = issuer.ledger.register_card(pp_id, uid, on_existing or "KeepVersion")
        except ValueError as exc:
            return _api_error("validation-error", str(exc), 422)
        return JSONResponse(_card_answer(card, issuer.lnurlw(request)))

    # -- Greenfield ----------------------------------------------------------------------------

    @app.post("/api/v1/stores/{store_id}/pull-payments")
    async def create_pull_payment(request: Request, store_id: str) -> Response:
        if (refused := store_guard(request, store_id)) is not None:
            return refused
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _api_error("validation-error", "Expected a JSON object", 422)
        name = body.get("name") or ""
        currency = str(body.get("currency") or "SATS").upper()
        try:
            amount = float(str(body.get("amount")))
        except ValueError:
            amount = -1.0
        if not isinstance(name, str) or len(name) > 50:
            return _api_error("validation-error", "The name should be maximum 50 characters.", 422)
        ceiling = 21e14 if currency == "SATS" else 21e6
        if currency not in ("SATS", "BTC") or not 0 < amount < ceiling:
            return _api_error("validation-error", "amount and currency (SATS or BTC) needed", 422)
        msat = round(amount * (1000 if currency == "SATS" else 100_000_000_000))
        pp = PullPayment(
            new_id(),
            name,
            msat,
            store_id=store_id,
            currency=currency,
            description=str(body.get("description") or "")[:500],
            auto_approve_claims=bool(body.get("autoApproveClaims", True)),
        )
        issuer.ledger.add_pull_payment(pp)
        return JSONResponse(pp.to_api())

    @app.get("/api/v1/pull-payments/{pp_id}")
    async def get_pull_payment(pp_id: str) -> Response:
        pp = issuer.ledger.pull_payment(pp_id)
        if pp is None:
            return _api_error("pullpayment-not-found", "The pull payment was not found", 404)
        return JSONResponse(pp.to_api())

    @app.get("/api/v1/pull-payments/{pp_id}/payouts")
    async def pull_payment_payouts(request: Request, pp_id: str) -> Response:
        if issuer.ledger.pull_payment(pp_id) is None:
            return _api_error("pullpayment-not-found", "The pull payment was not found", 404)
        include = _truthy(request.query_params.get("includeCancelled"))
        found = issuer.ledger.payouts(pull_payment_id=pp_id, include_cancelled=include)
        return JSONResponse([p.to_api() for p in found])

    @app.get("/api/v1/stores/{store_id}/payouts")
    async def store_payouts(request: Request, store_id: str) -> Response:
        if (refused := store_guard(request, store_id)) is not None:
            return refused
        include = _truthy(request.query_params.get("includeCancelled"))
        found = issuer.ledger.payouts(store_id=store_id, include_cancelled=include)
        return JSONResponse([p.to_api() for p in found])

    @app.get("/api/v1/stores/{store_id}/payouts/{payout_id}")
    async def store_payout(request: Request, store_id: str, payout_id: str) -> Response:
        if (refused := store_guard(request, store_id)) is not None:
            return refused
        payout = issuer.ledger.payout(payout_id)
        if payout is None or payout.store_id != store_id:
            return _api_error("payout-not-found", "The payout was not found", 404)
        return JSONResponse(payout.to_api())

    app.add_middleware(_Guard, max_query=config.max_query_chars, max_body=config.max_body_bytes)
    return app


def _sats(msat: int) -> str:
    return f"{msat // 1000}" if msat % 1000 == 0 else f"{msat / 1000:.3f}"


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


def _card_answer(card: Card, lnurlw: str) -> dict[str, Any]:
    """BTCPay's ``RegisterBoltcardResponse``: LNURLW, version and K0..K4 in upper-case hex."""
    answer: dict[str, Any] = {"LNURLW": lnurlw, "version": card.keys.version}
    for name, value in card.keys.as_hex().items():
        answer[name.upper()] = value.upper()
    return answer


# ---------------------------------------------------------------------------------------------
# Serving


def serve_in_thread(
    app: FastAPI, host: str = "127.0.0.1", port: int = 0
) -> tuple[str, Callable[[], None]]:
    """Run the issuer on loopback (with its lifespan: the webhook sender); ``(base_url, stop)``."""
    base_url, stop = serve(app, host, port, lifespan="on")
    log.warning("demo issuer (TEST PEER, not a production issuer) listening on %s", base_url)
    return base_url, stop
