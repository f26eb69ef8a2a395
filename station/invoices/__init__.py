"""Where the merchant's invoice comes from: BTCPay, LNbits, LND, Core Lightning or the demo wallet.

Settings (the integrator adds them to StationSettings; the names are fixed here)::

    [invoices]
    source = "btcpay"        # STATION_INVOICE_SOURCE: btcpay | lnbits | lnd | cln | demo
    url = "https://pay.example.com"   # STATION_INVOICE_URL
    key = "..."              # STATION_INVOICE_KEY: BTCPay API key, LNbits invoice key,
                             #   LND macaroon (hex), CLN rune; the demo wallet's invoice key
    store_id = "..."         # STATION_INVOICE_STORE_ID (BTCPay only)

``make_source(kind, url, key, store_id, http)`` builds the source on the caller's
``httpx.Client``; every source decodes each BOLT11 it receives and checks it (see check.py).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx

from .base import (
    Invoice,
    InvoiceMismatch,
    InvoiceSource,
    InvoiceSourceError,
    InvoiceSourceMisconfigured,
    InvoiceSourceRefused,
    InvoiceSourceUnavailable,
    InvoiceState,
    InvoiceStatus,
)
from .btcpay import BTCPayInvoices
from .cln import CLNInvoices
from .lnbits import LNbitsInvoices
from .lnd import LNDInvoices

KINDS = ("btcpay", "lnbits", "lnd", "cln", "demo")
_STORE_ID = re.compile(r"[A-Za-z0-9_\-]{1,100}")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")
_KEY_CHARS = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces: fits in a header
MAX_KEY_CHARS = 4096  # macaroons with caveats run to a few hundred hex characters

__all__ = [
    "KINDS",
    "BTCPayInvoices",
    "CLNInvoices",
    "Invoice",
    "InvoiceMismatch",
    "InvoiceSource",
    "InvoiceSourceError",
    "InvoiceSourceMisconfigured",
    "InvoiceSourceRefused",
    "InvoiceSourceUnavailable",
    "InvoiceState",
    "InvoiceStatus",
    "LNDInvoices",
    "LNbitsInvoices",
    "make_source",
]

_KEY_WHAT = {
    "btcpay": "a BTCPay Greenfield API key",
    "lnbits": "the LNbits wallet's invoice key",
    "lnd": "an LND invoice macaroon in hex",
    "cln": "a Core Lightning rune",
    "demo": "the demo wallet's invoice key",
}


def make_source(
    kind: str, url: str, key: str, store_id: str | None, http: httpx.Client
) -> InvoiceSource:
    """Build the invoice source named by ``kind`` or raise InvoiceSourceMisconfigured naming the
    setting to fix. Never repeats ``key`` in a message."""
    kind = (kind or "").strip().lower()
    if kind not in KINDS:
        raise InvoiceSourceMisconfigured(
            "[invoices] source (STATION_INVOICE_SOURCE) must be one of "
            f"{', '.join(KINDS)}; got {kind[:20]!r}"
        )
    url = _checked_url(kind, url)
    key = (key or "").strip()
    if not key:
        raise InvoiceSourceMisconfigured(
            f"[invoices] key (STATION_INVOICE_KEY) is empty; the {kind} source needs "
            f"{_KEY_WHAT[kind]}"
        )
    if len(key) > MAX_KEY_CHARS or not _KEY_CHARS.fullmatch(key):
        raise InvoiceSourceMisconfigured(
            "[invoices] key (STATION_INVOICE_KEY) has characters a key cannot have (spaces or "
            f"non-ASCII) or is too long; the {kind} source needs {_KEY_WHAT[kind]}"
        )
    if kind == "btcpay":
        store = (store_id or "").strip()
        if not _STORE_ID.fullmatch(store):
            raise InvoiceSourceMisconfigured(
                "[invoices] store_id (STATION_INVOICE_STORE_ID) must be the BTCPay store id "
                "(letters, digits, - and _), as shown in the store's settings"
            )
        return BTCPayInvoices(http, url, key, store)
    if kind == "lnd":
        if not _HEX.fullmatch(key):
            raise InvoiceSourceMisconfigured(
                "[invoices] key (STATION_INVOICE_KEY) must be the LND macaroon in hex "
                "(xxd -p -c 10000 invoice.macaroon)"
            )
        return LNDInvoices(http, url, key.lower())
    if kind == "cln":
        return CLNInvoices(http, url, key)
    return LNbitsInvoices(http, url, key, kind=kind)


def _checked_url(kind: str, url: str) -> str:
    url = (url or "").strip()
    if not url:
        raise InvoiceSourceMisconfigured(
            f"[invoices] url (STATION_INVOICE_URL) is empty; set it to the {kind} server's "
            "address, e.g. https://pay.example.com"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvoiceSourceMisconfigured(
            "[invoices] url (STATION_INVOICE_URL) must be an http:// or https:// address with "
            "a host"
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise InvoiceSourceMisconfigured(
            "[invoices] url (STATION_INVOICE_URL) must not carry a user, password, query or "
            "fragment; the key goes in [invoices] key (STATION_INVOICE_KEY)"
        )
    return url.rstrip("/")
