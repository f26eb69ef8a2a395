"""LNbits as the invoice source (also the demo wallet, which speaks the same subset).

``POST /api/v1/payments`` with ``X-Api-Key: <invoice key>`` and
``{"out": false, "amount": <sats>, "unit": "sat", "memo", "expiry": <seconds>}`` answers 201
with ``payment_hash``, ``bolt11`` (older releases only ``payment_request``) and ``checking_id``.
``GET /api/v1/payments/{payment_hash}`` answers ``{"paid": bool, "preimage": …}``. LNbits has no
"expired" state there, so an unpaid invoice past its signed expiry is reported ``expired``.
LNbits amounts are whole sats. See firmware_notes/invoice-sources.md.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx

from . import _http
from .base import Invoice, InvoiceMismatch, InvoiceSourceUnavailable, InvoiceStatus, check_request
from .check import checked_invoice, checked_preimage, same_bolt11

PERMISSION = "to create invoices (use the wallet's invoice key or admin key)"
_ID = re.compile(r"[A-Za-z0-9_\-:.]{1,200}")


class LNbitsInvoices:
    """Invoices from one LNbits wallet (or the demo wallet, ``kind="demo"``)."""

    def __init__(self, http: httpx.Client, url: str, key: str, *, kind: str = "lnbits") -> None:
        self.kind = kind
        self._http = http
        self._peer = _http.Peer(kind, url.rstrip("/"), key, PERMISSION)
        self._headers = {"X-Api-Key": key, "Accept": "application/json"}

    def __repr__(self) -> str:
        return f"LNbitsInvoices(kind={self.kind!r}, url={self._peer.where!r})"

    def create(self, amount_msat: int, memo: str, expiry_s: int) -> Invoice:
        check_request(amount_msat, memo, expiry_s)
        if amount_msat % 1000:
            raise ValueError(
                "LNbits invoices are whole sats: amount_msat must be a multiple of 1000"
            )
        body = {
            "out": False,
            "amount": amount_msat // 1000,
            "unit": "sat",
            "memo": memo,
            "expiry": expiry_s,
        }
        _, data = _http.call(
            self._http, self._peer, "POST", "/api/v1/payments", headers=self._headers, body=body
        )
        kind = self.kind
        if isinstance(data, dict) and "bolt11" in data:
            text = _http.text_field(data, "bolt11", kind)
        else:
            text = _http.text_field(data, "payment_request", kind)
        said_hash = _http.text_field(data, "payment_hash", kind, 64)
        checking_id = data.get("checking_id")
        invoice_id = checking_id if isinstance(checking_id, str) and checking_id else said_hash
        if not _ID.fullmatch(invoice_id):
            raise InvoiceSourceUnavailable(
                f"the {kind} invoice source returned a checking id we cannot use; "
                f"{_http.URL_HINT}"
            )
        said_amount = data.get("amount")
        if said_amount is not None and said_amount != amount_msat:
            raise InvoiceMismatch(
                f"the {kind} invoice source says its invoice is for {str(said_amount)[:20]} msat; "
                f"we asked for {amount_msat} msat"
            )
        return checked_invoice(
            text, kind=kind, amount_msat=amount_msat, invoice_id=invoice_id, payment_hash=said_hash
        )

    def lookup(self, invoice: Invoice) -> InvoiceStatus:
        path = f"/api/v1/payments/{invoice.payment_hash}"
        _, data = _http.call(self._http, self._peer, "GET", path, headers=self._headers)
        paid = _http.field(data, "paid", self.kind)
        if not isinstance(paid, bool):
            raise InvoiceSourceUnavailable(
                f"the {self.kind} invoice source's 'paid' is not true or false; {_http.URL_HINT}"
            )
        details = data.get("details")
        if isinstance(details, dict):
            same_bolt11(details.get("bolt11"), invoice, self.kind)
            said_hash = details.get("payment_hash")
            if isinstance(said_hash, str) and said_hash.lower() != invoice.payment_hash:
                raise InvoiceMismatch(
                    f"the {self.kind} invoice source answered the lookup for another payment hash"
                )
        if paid:
            preimage = checked_preimage(data.get("preimage"), invoice.payment_hash, self.kind)
            return InvoiceStatus("paid", preimage)
        if datetime.now(UTC) >= invoice.expires_at:
            return InvoiceStatus("expired")
        return InvoiceStatus("unpaid")
