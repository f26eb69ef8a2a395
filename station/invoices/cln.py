"""Core Lightning as the invoice source, through its ``clnrest`` plugin.

``POST /v1/invoice`` with header ``Rune: <rune>`` and
``{"amount_msat", "label", "description", "expiry"}`` answers ``{"bolt11", "payment_hash",
"payment_secret", "expires_at", "created_index"}``; the label must be unique, so every invoice
gets ``station-<uuid4 hex>``. ``POST /v1/listinvoices {"payment_hash": …}`` answers
``{"invoices": [{"status": "paid" | "unpaid" | "expired", "payment_preimage", …}]}``. The rune
must allow ``invoice`` and ``listinvoices``. See firmware_notes/invoice-sources.md.
"""

from __future__ import annotations

import uuid

import httpx

from . import _http
from .base import Invoice, InvoiceMismatch, InvoiceSourceUnavailable, InvoiceStatus, check_request
from .check import checked_invoice, checked_preimage, same_bolt11

KIND = "cln"
PERMISSION = "the methods invoice and listinvoices (check the rune's restrictions)"
_STATES = ("paid", "unpaid", "expired")


class CLNInvoices:
    """Invoices from a Core Lightning node's REST plugin (clnrest)."""

    kind = KIND

    def __init__(self, http: httpx.Client, url: str, rune: str) -> None:
        self._http = http
        self._peer = _http.Peer(KIND, url.rstrip("/"), rune, PERMISSION)
        self._headers = {"Rune": rune, "Accept": "application/json"}

    def __repr__(self) -> str:
        return f"CLNInvoices(url={self._peer.where!r})"

    def create(self, amount_msat: int, memo: str, expiry_s: int) -> Invoice:
        check_request(amount_msat, memo, expiry_s)
        label = f"station-{uuid.uuid4().hex}"
        body = {"amount_msat": amount_msat, "label": label, "description": memo, "expiry": expiry_s}
        _, data = _http.call(
            self._http, self._peer, "POST", "/v1/invoice", headers=self._headers, body=body
        )
        return checked_invoice(
            _http.text_field(data, "bolt11", KIND),
            kind=KIND,
            amount_msat=amount_msat,
            invoice_id=label,
            payment_hash=_http.text_field(data, "payment_hash", KIND, 64),
        )

    def lookup(self, invoice: Invoice) -> InvoiceStatus:
        body = {"payment_hash": invoice.payment_hash}
        _, data = _http.call(
            self._http, self._peer, "POST", "/v1/listinvoices", headers=self._headers, body=body
        )
        found = _http.field(data, "invoices", KIND)
        if not isinstance(found, list):
            raise InvoiceSourceUnavailable(
                f"the {KIND} invoice source's 'invoices' is not a list; {_http.URL_HINT}"
            )
        mine = [
            item
            for item in found
            if isinstance(item, dict)
            and isinstance(item.get("payment_hash"), str)
            and item["payment_hash"].lower() == invoice.payment_hash
        ]
        if not mine:
            raise InvoiceMismatch(
                f"the {KIND} invoice source does not know the invoice it made for us "
                f"(label {invoice.id}); was it deleted, or does [invoices] url point at "
                "another node?"
            )
        item = mine[0]
        status = item.get("status")
        if status not in _STATES:
            raise InvoiceSourceUnavailable(
                f"the {KIND} invoice source reported an unknown invoice status; {_http.URL_HINT}"
            )
        same_bolt11(item.get("bolt11"), invoice, KIND)
        if status != "paid":
            return InvoiceStatus(status)
        preimage = checked_preimage(item.get("payment_preimage"), invoice.payment_hash, KIND)
        return InvoiceStatus("paid", preimage)
