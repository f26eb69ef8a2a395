"""Fake issuers for the claim client: exact answer shapes of the three real services, served
through httpx.MockTransport. Shapes are taken from their source (see
firmware_notes/lnurl-withdraw.md): the boltcard Go service (lnurlw_request.go,
lnurlw_callback.go, resp_err.go), LNbits boltcards (views_lnurl.py) and BTCPay Server
(UIBoltcardController.cs + UILNURLController.GetLNURLForPullPayment)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import httpx

# The Bolt Card spec's example tap (docs/SPEC.md): p = encrypted PICCData, c = SUN MAC.
P = "A2EF40F6D46F1BB36E6EBF0114D4A464"
C = "F509EEA788E37E32"
# A stand-in BOLT11 string (not decoded by the claim client; the invoice sources decode).
BOLT11 = "lnbc21u1p" + "q" * 40 + "x5" * 60
GO_K1 = "3c4b2f1e8a9d7c6b5a4f3e2d1c0b9a88"
LNBITS_HIT = "HnvTq9XEa3kd8sB2wP"


def js(status: int, body: object) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode(),
                          headers={"content-type": "application/json"})


@dataclass
class Recorder:
    """A MockTransport that answers through `handler` and keeps every URL it received."""

    handler: Callable[[httpx.Request], httpx.Response]
    seen: list[str] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(str(request.url))
        return self.handler(request)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self))

    def hosts(self) -> list[str]:
        return [httpx.URL(u).host for u in self.seen]


def query(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.url.query.decode()).items()}


# -- BTCPay Server: GET /boltcard?p=&c= ; callback = the same URL; k1 = "<p>-<c>" ------------

def btcpay(
    *,
    host: str = "btcpay.example",
    remaining_msat: int = 2_100_000,
    replayed: bool = False,
    callback_answer: tuple[int, object] = (
        200, {"status": "OK", "reason": "The payment has been initiated but is still in-flight."}
    ),
) -> Callable[[httpx.Request], httpx.Response]:
    def handle(request: httpx.Request) -> httpx.Response:
        q = query(request)
        if replayed:
            return js(400, {"status": "ERROR", "reason": "Replayed or expired query"})
        if "pr" in q:
            status, body = callback_answer
            return js(status, body)
        here = f"https://{host}/boltcard?p={q['p']}&c={q['c']}"
        return js(200, {
            "callback": here,
            "k1": f"{q['p']}-{q['c']}",
            "tag": "withdrawRequest",
            "defaultDescription": "Coffee card",
            "minWithdrawable": min(1000, remaining_msat),
            "maxWithdrawable": remaining_msat,
            "currentBalance": remaining_msat,
            "balanceCheck": here,
        })

    return handle


# -- boltcard Go service: GET /ln?p=&c= ; callback /cb ; errors always "bad request" HTTP 200 --

def boltcard_go(
    *,
    host: str = "card.example",
    pin_limit_msat: int | None = 50_000_000,
    pin: str = "4321",
    refuse_first: bool = False,
) -> Callable[[httpx.Request], httpx.Response]:
    bad = {"status": "ERROR", "reason": "bad request"}

    def handle(request: httpx.Request) -> httpx.Response:
        q = query(request)
        if request.url.path == "/cb":
            if q.get("k1") != GO_K1 or "pr" not in q:
                return js(200, bad)
            if pin_limit_msat is not None and pin_limit_msat <= 2_100_000 and q.get("pin") != pin:
                return js(200, bad)  # the Go service hides a wrong PIN behind the generic error
            return js(200, {"status": "OK"})
        if refuse_first:
            return js(200, bad)
        body: dict[str, object] = {
            "callback": f"https://{host}/cb",
            "defaultDescription": "WWT withdrawal",
            "k1": GO_K1,
            "maxWithdrawable": 1_000_000_000,
            "minWithdrawable": 1000,
            "tag": "withdrawRequest",
        }
        if pin_limit_msat is not None:
            body["pinLimit"] = pin_limit_msat
        return js(200, dict(sorted(body.items())))  # Go's json.Marshal sorts map keys

    return handle


# -- LNbits boltcards: /boltcards/api/v1/scan/{external_id} ; pays synchronously ------------

def lnbits(
    *, host: str = "lnbits.example", first_error: str | None = None,
    callback_error: str | None = None,
) -> Callable[[httpx.Request], httpx.Response]:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/boltcards/api/v1/lnurl/cb/"):
            if callback_error:
                return js(200, {"status": "ERROR", "reason": callback_error})
            return js(200, {"status": "OK"})
        if first_error:
            return js(200, {"status": "ERROR", "reason": first_error})
        return js(200, {
            "tag": "withdrawRequest",
            "callback": f"https://{host}/boltcards/api/v1/lnurl/cb/{LNBITS_HIT}",
            "k1": LNBITS_HIT,
            "minWithdrawable": 1000,
            "maxWithdrawable": 30_000_000,
            "defaultDescription": "Boltcard (refund address lnurl://LNURL1DP68GURN8GHJ7)",
            "payLink": f"lnurlp://{host}/boltcards/api/v1/lnurlp/{LNBITS_HIT}",
        })

    return handle


class CountingStream(httpx.SyncByteStream):
    """A huge body handed out in chunks; `pulled` counts what the client actually read."""

    def __init__(self, total: int, chunk: int = 4096, fill: bytes = b" ") -> None:
        self.total = total
        self.chunk = chunk
        self.fill = fill
        self.pulled = 0

    def __iter__(self) -> Iterator[bytes]:
        while self.pulled < self.total:
            piece = self.fill * min(self.chunk, self.total - self.pulled)
            self.pulled += len(piece)
            yield piece
