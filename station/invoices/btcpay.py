"""BTCPay Server as the invoice source: the store's Lightning node through Greenfield.

``POST /api/v1/stores/{storeId}/lightning/BTC/invoices`` with ``Authorization: token <key>``
and ``{"amount": "<msat>", "description", "expiry": <seconds>}``; the answer carries the invoice
under the upper-case key ``BOLT11``. ``GET …/invoices/{id}`` reports ``status`` ``Unpaid``,
``Paid`` or ``Expired``. The key needs ``btcpay.store.cancreatelightninginvoice`` (create) and
``btcpay.store.canviewlightninginvoice`` (lookup). See firmware_notes/invoice-sources.md.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import httpx

from . import _http
from .base import Invoice, InvoiceMismatch, InvoiceSourceUnavailable, InvoiceStatus, check_request
from .check import checked_invoice, checked_preimage, same_bolt11

KIND = "btcpay"
PERMISSION = "btcpay.store.cancreatelightninginvoice and btcpay.store.canviewlightninginvoice"
_ID = re.compile(r"[A-Za-z0-9_\-:.]{1,200}")
_STATES = {"Paid": "paid", "Unpaid": "unpaid", "Expired": "expired"}


class BTCPayInvoices:
    """Invoices from a BTCPay store's Lightning node (Greenfield API)."""

    kind = KIND

    def __init__(self, http: httpx.Client, url: str, key: str, store_id: str) -> None:
        self._http = http
        self._peer = _http.Peer(KIND, url.rstrip("/"), key, PERMISSION)
        self._headers = {"Authorization": f"token {key}", "Accept": "application/json"}
        self._base = f"/api/v1/stores/{quote(store_id, safe='')}/lightning/BTC/invoices"

    def __repr__(self) -> str:
        return f"BTCPayInvoices(url={self._peer.where!r})"

    def create(self, amount_msat: int, memo: str, expiry_s: int) -> Invoice:
        check_request(amount_msat, memo, expiry_s)
        body = {
            "amount": str(amount_msat),
            "description": memo,
            "expiry": expiry_s,
            "descriptionHashOnly": False,
            "privateRouteHints": False,
        }
        _, data = _http.call(
            self._http, self._peer, "POST", self._base, headers=self._headers, body=body
        )
        invoice_id = _http.text_field(data, "id", KIND, 200)
        if not _ID.fullmatch(invoice_id):
            raise InvoiceSourceUnavailable(
                f"the {KIND} invoice source returned an invoice id we cannot use; {_http.URL_HINT}"
            )
        said_amount = data.get("amount")
        if said_amount is not None and str(said_amount) != str(amount_msat):
            raise InvoiceMismatch(
                f"the {KIND} invoice source says its invoice is for {str(said_amount)[:20]} msat; "
                f"we asked for {amount_msat} msat"
            )
        said_hash = data.get("paymentHash")
        return checked_invoice(
            _http.text_field(data, "BOLT11", KIND),
            kind=KIND,
            amount_msat=amount_msat,
            invoice_id=invoice_id,
            payment_hash=said_hash if isinstance(said_hash, str) else None,
        )

    def lookup(self, invoice: Invoice) -> InvoiceStatus:
        path = f"{self._base}/{quote(invoice.id, safe='')}"
        _, data = _http.call(self._http, self._peer, "GET", path, headers=self._headers)
        status = _http.field(data, "status", KIND)
        if status not in _STATES:
            raise InvoiceSourceUnavailable(
                f"the {KIND} invoice source reported an unknown invoice status; {_http.URL_HINT}"
            )
        same_bolt11(data.get("BOLT11"), invoice, KIND)
        said_hash = data.get("paymentHash")
        if isinstance(said_hash, str) and said_hash.lower() != invoice.payment_hash:
            raise InvoiceMismatch(
                f"the {KIND} invoice source answered the lookup for another payment hash"
            )
        state = _STATES[status]
        if state != "paid":
            return InvoiceStatus(state)  # type: ignore[arg-type]
        preimage = checked_preimage(data.get("preimage"), invoice.payment_hash, KIND)
        return InvoiceStatus("paid", preimage)
