"""How the demo issuer (a TEST PEER) pays a claimed BOLT11: the payer seam.

The issuer never holds a Lightning node. It hands every invoice to a :class:`Payer`, and the
one real implementation, :class:`LnbitsPayer`, speaks the LNbits payments API
(``POST /api/v1/payments {"out": true, "bolt11": …}`` with an admin key). So the same issuer
pays through our demo wallet, which speaks that subset, or through a real LNbits wallet, the
way an issuer running on LNbits would.

The preimage is a secret of the payer until the payout is proven; it is never logged here.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

__all__ = ["LnbitsPayer", "PayError", "PayResult", "Payer"]

_HASH_RE = re.compile(r"[0-9a-f]{64}")
_MAX_BODY = 64 * 1024
_MAX_REASON = 300


@dataclass(frozen=True, slots=True)
class PayResult:
    """A payment the payer reports as settled."""

    payment_hash: str
    preimage: str | None = field(default=None, repr=False)


class PayError(Exception):
    """The payer could not pay (its own words in ``reason``); the payout is then cancelled."""

    def __init__(self, reason: str) -> None:
        self.reason = reason[:_MAX_REASON] or "payment failed"
        super().__init__(self.reason)


class Payer(Protocol):
    """Pays one BOLT11 invoice; returns when it is settled or raises :class:`PayError`.

    ``payment_hash`` is the invoice's own hash (decoded by the issuer), given so that a payer
    can look the payment up without decoding it again.
    """

    async def pay(self, bolt11: str, payment_hash: str) -> PayResult: ...


def _detail(response: httpx.Response) -> str:
    """LNbits' ``{"detail": …}`` reason, or the HTTP status when the body has none."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("message") or body.get("reason")
        if isinstance(detail, str) and detail:
            return detail
    return f"the payer answered HTTP {response.status_code}"


class LnbitsPayer:
    """Pays through an LNbits-compatible wallet API with its admin key.

    ``client`` is injected so that tests can hand in any transport; when it is ``None`` an
    ``httpx.AsyncClient`` is created on first use (inside the issuer's event loop) and closed by
    :meth:`aclose`. Pending answers (a real node still routing) are polled with
    ``GET /api/v1/payments/{hash}`` every ``poll_s`` seconds until paid or ``settle_timeout_s``.
    """

    def __init__(
        self,
        base_url: str,
        admin_key: str,
        client: httpx.AsyncClient | None = None,
        *,
        timeout_s: float = 30.0,
        poll_s: float = 0.2,
        settle_timeout_s: float = 120.0,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._key = admin_key
        self._client = client
        self._own_client = client is None
        self._timeout = timeout_s
        self._poll = poll_s
        self._settle_timeout = settle_timeout_s

    def __repr__(self) -> str:
        return f"LnbitsPayer({self._base!r}, admin_key=<redacted>)"

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)
        return self._client

    async def aclose(self) -> None:
        """Close the client this payer created (an injected client stays the caller's)."""
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _lookup(self, payment_hash: str) -> dict[str, Any] | None:
        response = await self._http().get(
            f"{self._base}/api/v1/payments/{payment_hash}", headers={"X-Api-Key": self._key}
        )
        if response.status_code != 200 or len(response.content) > _MAX_BODY:
            return None
        try:
            body = response.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    async def pay(self, bolt11: str, payment_hash: str) -> PayResult:
        try:
            response = await self._http().post(
                f"{self._base}/api/v1/payments",
                json={"out": True, "bolt11": bolt11},
                headers={"X-Api-Key": self._key},
            )
        except httpx.HTTPError as exc:
            raise PayError(f"the payer is unreachable ({type(exc).__name__})") from None
        if response.status_code >= 400 or len(response.content) > _MAX_BODY:
            raise PayError(_detail(response))
        try:
            body = response.json()
        except ValueError:
            raise PayError("the payer answered something that is not JSON") from None
        if not isinstance(body, dict):
            raise PayError("the payer answered something that is not a JSON object")
        answered = body.get("payment_hash")
        if isinstance(answered, str) and _HASH_RE.fullmatch(answered):
            payment_hash = answered
        status = body.get("status")
        if status in ("failed", "error"):
            raise PayError(_detail(response))
        preimage = body.get("preimage")
        if status == "success" and isinstance(preimage, str) and preimage:
            return PayResult(payment_hash, preimage)
        return await self._settle(payment_hash, pending=status != "success")

    async def _settle(self, payment_hash: str, *, pending: bool) -> PayResult:
        """Wait for a pending payment, and fetch the preimage the pay answer lacked."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settle_timeout
        while True:
            try:
                found = await self._lookup(payment_hash)
            except httpx.HTTPError:
                found = None
            if found is not None:
                preimage = found.get("preimage")
                preimage = preimage if isinstance(preimage, str) and preimage else None
                if found.get("paid") is True:
                    return PayResult(payment_hash, preimage)
                details = found.get("details")
                if isinstance(details, dict) and details.get("status") == "failed":
                    raise PayError("the payment failed at the payer")
            if not pending:
                # The pay call said success; a lookup that does not confirm it only costs us
                # the preimage, not the payment.
                return PayResult(payment_hash, None)
            if loop.time() >= deadline:
                raise PayError("the payment did not settle in time")
            await asyncio.sleep(self._poll)
