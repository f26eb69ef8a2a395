"""Greenfield payouts client: list a store's payouts and fetch one, on an injected
``httpx.AsyncClient`` (tests and the app hand theirs in).

What BTCPay does (``GreenfieldPullPaymentController``, see firmware_notes/btcpay-boltcard.md):
``GET /api/v1/stores/{store}/payouts`` returns one JSON array of every payout, not paged,
and leaves cancelled payouts out unless ``includeCancelled=true``; ``…/payouts/{id}``
returns one. Both need ``Authorization: token <key>`` with ``btcpay.store.canviewpayouts``.
Errors are ``{"code", "message"}`` bodies (HTTP 400/404/422) or a 401/403. Field names are
BTCPay 2.x's (``originalAmount``, ``payoutAmount``, ``payoutMethodId``); the proof's keys are
PascalCase in the version we read and are matched case-insensitively.

The API key never appears in an exception message or a ``repr``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

#: Largest answer read: one payout is ~1 KB; a store with 100,000 payouts is ~100 MB.
MAX_LIST_BYTES = 256 * 1024 * 1024
MAX_ONE_BYTES = 1024 * 1024
STATES = frozenset(
    {"AwaitingApproval", "AwaitingPayment", "InProgress", "Completed", "Cancelled"}
)


class GreenfieldError(Exception):
    """A Greenfield call failed; the subclass says whose fault and what to do."""


class GreenfieldUnauthorized(GreenfieldError):
    """401/403: the API key is wrong or lacks ``btcpay.store.canviewpayouts`` for this store;
    make a new key in BTCPay and ``tracker issuers add`` it again."""


class GreenfieldNotFound(GreenfieldError):
    """404: no such store or payout (``code`` says which, e.g. ``payout-not-found``)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class GreenfieldRefused(GreenfieldError):
    """HTTP 400/422 with BTCPay's ``{"code", "message"}`` body: the request was refused."""

    def __init__(self, message: str, code: str | None, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class GreenfieldUnavailable(GreenfieldError):
    """Timeout, connection failure or 5xx: BTCPay is unreachable now; retry later."""


class GreenfieldProtocolError(GreenfieldError):
    """The answer is not the JSON shape Greenfield sends (wrong URL, a proxy's error page)."""


def _text(value: Any, name: str, *, required: bool = False, limit: int = 4000) -> str | None:
    if value is None:
        if required:
            raise GreenfieldProtocolError(f"payout without {name}")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise GreenfieldProtocolError(f"payout field {name} is not text")
    text = str(value)
    if len(text) > limit:
        raise GreenfieldProtocolError(f"payout field {name} is longer than {limit} characters")
    return text


def _timestamp(value: Any) -> datetime | None:
    """Greenfield dates are unix seconds (``UnixTimestampConverter``); ISO text is accepted."""
    if value is None:
        return None
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        pass
    raise GreenfieldProtocolError("payout date is neither unix seconds nor ISO 8601")


@dataclass(frozen=True, slots=True)
class GreenfieldPayout:
    """One payout as Greenfield describes it. ``proof`` keeps BTCPay's keys as sent."""

    id: str
    state: str
    revision: int
    pull_payment_id: str | None
    destination: str | None
    original_amount: str | None
    original_currency: str | None
    payout_amount: str | None
    payout_currency: str | None
    payout_method_id: str | None
    date: datetime | None
    proof: dict[str, Any] | None = field(default=None, repr=False)

    @classmethod
    def from_api(cls, data: Any) -> GreenfieldPayout:
        if not isinstance(data, dict):
            raise GreenfieldProtocolError("a payout is not a JSON object")
        state = _text(data.get("state"), "state", required=True)
        if state not in STATES:
            raise GreenfieldProtocolError(f"unknown payout state {state!r}")
        revision = data.get("revision", 0)
        if revision is None:
            revision = 0
        if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
            raise GreenfieldProtocolError("payout revision is not a non-negative integer")
        proof = data.get("paymentProof")
        if proof is not None and not isinstance(proof, dict):
            raise GreenfieldProtocolError("paymentProof is not a JSON object")
        return cls(
            id=_text(data.get("id"), "id", required=True, limit=100) or "",
            state=state,
            revision=revision,
            pull_payment_id=_text(data.get("pullPaymentId"), "pullPaymentId", limit=100),
            destination=_text(data.get("destination"), "destination"),
            original_amount=_text(data.get("originalAmount"), "originalAmount", limit=40),
            original_currency=_text(data.get("originalCurrency"), "originalCurrency", limit=16),
            payout_amount=_text(data.get("payoutAmount"), "payoutAmount", limit=40),
            payout_currency=_text(data.get("payoutCurrency"), "payoutCurrency", limit=16),
            payout_method_id=_text(data.get("payoutMethodId"), "payoutMethodId", limit=40),
            date=_timestamp(data.get("date")),
            proof=proof,
        )

    def proof_value(self, key: str) -> str | None:
        """A proof entry by name, whatever its case (BTCPay writes ``PaymentHash``)."""
        if not self.proof:
            return None
        wanted = key.lower()
        for name, value in self.proof.items():
            if isinstance(name, str) and name.lower() == wanted and isinstance(value, str):
                return value
        return None


class _StoreAddress:
    """One store's base URL, quoted store id and key header; the key never reaches a repr."""

    def __init__(self, *, url: str, store_id: str, api_key: str) -> None:
        self._base = url.rstrip("/")
        self._store = quote(store_id, safe="")
        self._headers = {"Authorization": f"token {api_key}", "Accept": "application/json"}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._base!r}, store={self._store!r}, key=<hidden>)"


class GreenfieldClient(_StoreAddress):
    """Payout reads for one store. ``http`` is the caller's client (its timeout applies)."""

    def __init__(self, http: httpx.AsyncClient, *, url: str, store_id: str, api_key: str) -> None:
        super().__init__(url=url, store_id=store_id, api_key=api_key)
        self._http = http

    async def list_payouts(self, *, include_cancelled: bool = True) -> list[GreenfieldPayout]:
        """Every payout of the store (cancelled ones too, unless told otherwise).

        Greenfield answers one array (no paging), so this is one request."""
        query = "?includeCancelled=true" if include_cancelled else ""
        data = await self._get(f"/api/v1/stores/{self._store}/payouts{query}", MAX_LIST_BYTES)
        if not isinstance(data, list):
            raise GreenfieldProtocolError("the payouts list is not a JSON array")
        return [GreenfieldPayout.from_api(item) for item in data]

    async def get_payout(self, payout_id: str) -> GreenfieldPayout:
        return GreenfieldPayout.from_api(await self._get(_payout_path(self._store, payout_id),
                                                         MAX_ONE_BYTES))

    async def _get(self, path: str, limit: int) -> Any:
        try:
            async with self._http.stream("GET", self._base + path,
                                         headers=self._headers) as response:
                body = await _read_limited(response, limit)
        except httpx.TimeoutException:
            raise _timeout(self._base) from None
        except httpx.HTTPError as exc:
            raise _unreachable(self._base, exc) from None
        return _interpret(self._base, response.status_code, body)


class BlockingGreenfieldClient(_StoreAddress):
    """One payout by id on a plain (thread-safe) ``httpx.Client``: the webhook fetches it in
    the same worker thread that then stores it, one thread hop per delivery instead of three,
    and httpx's sync path costs about half the CPU of its async one on loopback."""

    def __init__(self, http: httpx.Client, *, url: str, store_id: str, api_key: str) -> None:
        super().__init__(url=url, store_id=store_id, api_key=api_key)
        self._http = http

    def get_payout(self, payout_id: str) -> GreenfieldPayout:
        path = _payout_path(self._store, payout_id)
        try:
            with self._http.stream("GET", self._base + path, headers=self._headers) as response:
                body = _read_limited_sync(response, MAX_ONE_BYTES)
        except httpx.TimeoutException:
            raise _timeout(self._base) from None
        except httpx.HTTPError as exc:
            raise _unreachable(self._base, exc) from None
        return GreenfieldPayout.from_api(_interpret(self._base, response.status_code, body))


def _payout_path(store: str, payout_id: str) -> str:
    return f"/api/v1/stores/{store}/payouts/{quote(payout_id, safe='')}"


def _timeout(base: str) -> GreenfieldUnavailable:
    return GreenfieldUnavailable(f"BTCPay at {base} did not answer in time")


def _unreachable(base: str, exc: Exception) -> GreenfieldUnavailable:
    return GreenfieldUnavailable(f"BTCPay at {base} is unreachable ({type(exc).__name__})")


def _interpret(base: str, status: int, body: bytes) -> Any:
    """The JSON of a 200 answer; the typed error for anything else."""
    if status in (401, 403):
        raise GreenfieldUnauthorized(GreenfieldUnauthorized.__doc__ or "unauthorized")
    if status >= 500:
        raise GreenfieldUnavailable(f"BTCPay at {base} answered HTTP {status}")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise GreenfieldProtocolError(
            f"BTCPay at {base} answered HTTP {status} without JSON; check the URL"
        ) from None
    if status == 404:
        code, message = _error_fields(data)
        raise GreenfieldNotFound(message or "not found", code)
    if status >= 400:
        code, message = _error_fields(data)
        raise GreenfieldRefused(message or f"HTTP {status}", code, status)
    if status != 200:
        raise GreenfieldProtocolError(f"unexpected HTTP {status} from BTCPay")
    return data


def _error_fields(data: Any) -> tuple[str | None, str | None]:
    """``(code, message)`` of Greenfield's error body; a validation error is a list of
    ``{"path", "message"}``."""
    if isinstance(data, dict):
        code, message = data.get("code"), data.get("message")
        return (str(code)[:100] if code else None, str(message)[:500] if message else None)
    if isinstance(data, list) and data and isinstance(data[0], dict):
        first = data[0]
        return ("validation-error", f"{first.get('path', '')}: {first.get('message', '')}"[:500])
    return None, None


def _declared_too_large(response: httpx.Response, limit: int) -> None:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise GreenfieldProtocolError(f"answer larger than {limit} bytes")


async def _read_limited(response: httpx.Response, limit: int) -> bytes:
    _declared_too_large(response, limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise GreenfieldProtocolError(f"answer larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _read_limited_sync(response: httpx.Response, limit: int) -> bytes:
    _declared_too_large(response, limit)
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise GreenfieldProtocolError(f"answer larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
