"""LND as the invoice source, through its REST gateway.

``POST /v1/invoices`` with ``Grpc-Metadata-macaroon: <hex>`` and
``{"value_msat": "<msat>", "memo", "expiry": "<seconds>"}`` (int64 fields travel as JSON
strings) answers ``{"r_hash": <base64>, "payment_request", "add_index", "payment_addr"}``.
``GET /v1/invoice/{hex payment hash}`` answers the Invoice message, whose ``state`` is ``OPEN``,
``SETTLED``, ``CANCELED`` or ``ACCEPTED`` and whose ``r_preimage`` (base64) is present even for
unpaid invoices (LND made it), so it is only passed on once ``SETTLED``. The macaroon needs
``invoices:write`` and ``invoices:read``. See firmware_notes/invoice-sources.md.
"""

from __future__ import annotations

import base64
import binascii

import httpx

from . import _http
from .base import Invoice, InvoiceMismatch, InvoiceSourceUnavailable, InvoiceStatus, check_request
from .check import checked_invoice, checked_preimage, same_bolt11

KIND = "lnd"
PERMISSION = "invoices:write and invoices:read (an invoice macaroon)"
# LND's own words for a refused macaroon (it sends them with HTTP 500, lnd issue #2332)
REFUSED_WORDS = ("verification failed", "permission denied", "cannot get macaroon", "macaroon")
_STATES = {"SETTLED": "paid", "OPEN": "unpaid", "ACCEPTED": "unpaid", "CANCELED": "expired"}


def b64_to_hex(value: object, name: str) -> str:
    """LND's REST bytes fields: standard base64 (url-safe accepted too) → lower-case hex."""
    if not isinstance(value, str) or not value or len(value) > 200:
        raise InvoiceSourceUnavailable(
            f"the {KIND} invoice source's {name!r} is not base64; {_http.URL_HINT}"
        )
    padded = value + "=" * (-len(value) % 4)
    try:
        if "-" in value or "_" in value:
            raw = base64.urlsafe_b64decode(padded)
        else:
            raw = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvoiceSourceUnavailable(
            f"the {KIND} invoice source's {name!r} is not base64; {_http.URL_HINT}"
        ) from exc
    return raw.hex()


class LNDInvoices:
    """Invoices from an LND node's REST API."""

    kind = KIND

    def __init__(self, http: httpx.Client, url: str, macaroon_hex: str) -> None:
        self._http = http
        self._peer = _http.Peer(
            KIND, url.rstrip("/"), macaroon_hex, PERMISSION, REFUSED_WORDS
        )
        self._headers = {"Grpc-Metadata-macaroon": macaroon_hex, "Accept": "application/json"}

    def __repr__(self) -> str:
        return f"LNDInvoices(url={self._peer.where!r})"

    def create(self, amount_msat: int, memo: str, expiry_s: int) -> Invoice:
        check_request(amount_msat, memo, expiry_s)
        body = {"value_msat": str(amount_msat), "memo": memo, "expiry": str(expiry_s)}
        _, data = _http.call(
            self._http, self._peer, "POST", "/v1/invoices", headers=self._headers, body=body
        )
        said_hash = b64_to_hex(_http.field(data, "r_hash", KIND), "r_hash")
        if len(said_hash) != 64:
            raise InvoiceMismatch(f"the {KIND} invoice source returned an r_hash of wrong length")
        return checked_invoice(
            _http.text_field(data, "payment_request", KIND),
            kind=KIND,
            amount_msat=amount_msat,
            invoice_id=said_hash,
            payment_hash=said_hash,
        )

    def lookup(self, invoice: Invoice) -> InvoiceStatus:
        path = f"/v1/invoice/{invoice.payment_hash}"
        _, data = _http.call(self._http, self._peer, "GET", path, headers=self._headers)
        state = _http.field(data, "state", KIND)
        if state not in _STATES:
            raise InvoiceSourceUnavailable(
                f"the {KIND} invoice source reported an unknown invoice state; {_http.URL_HINT}"
            )
        if "r_hash" in data and b64_to_hex(data["r_hash"], "r_hash") != invoice.payment_hash:
            raise InvoiceMismatch(
                f"the {KIND} invoice source answered the lookup for another payment hash"
            )
        same_bolt11(data.get("payment_request"), invoice, KIND)
        mapped = _STATES[state]
        if mapped != "paid":
            return InvoiceStatus(mapped)  # type: ignore[arg-type]
        raw = data.get("r_preimage")
        preimage = b64_to_hex(raw, "r_preimage") if raw else None
        return InvoiceStatus("paid", checked_preimage(preimage, invoice.payment_hash, KIND))
