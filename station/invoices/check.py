"""Decode every BOLT11 a source hands us and hold it to what we asked for.

Why: the invoice is what the issuer will pay. A source that is misconfigured, buggy or not who
we think it is could return an invoice for another amount, or one whose payment hash is not the
one it reports (so we would watch the wrong payment). The ``bolt11`` package decodes and checks
the signature; here we compare amount, payment hash and expiry, and check preimages against the
hash, and turn every disagreement into :class:`InvoiceMismatch`.
"""

from __future__ import annotations

import hashlib
import re
import time
from datetime import UTC, datetime

import bolt11

from .base import Invoice, InvoiceMismatch

MAX_BOLT11_CHARS = 2000  # the tracker's claim record holds at most 2000 characters
_HEX64 = re.compile(r"[0-9a-f]{64}")
_ZERO_PREIMAGE = "0" * 64


def checked_invoice(
    text: str,
    *,
    kind: str,
    amount_msat: int,
    invoice_id: str,
    payment_hash: str | None = None,
) -> Invoice:
    """Decode ``text`` and return it as an :class:`Invoice` if it matches.

    ``amount_msat`` is what we asked for; ``payment_hash`` (hex) is what the source said the hash
    is, when it said one. Raises :class:`InvoiceMismatch` otherwise.
    """
    if not isinstance(text, str) or not text or len(text) > MAX_BOLT11_CHARS:
        raise InvoiceMismatch(
            f"the {kind} invoice source returned no BOLT11 of at most {MAX_BOLT11_CHARS} "
            "characters"
        )
    try:
        decoded = bolt11.decode(text)
    except Exception as exc:  # the decoder raises many types for a malformed string
        raise InvoiceMismatch(
            f"the {kind} invoice source returned a BOLT11 that does not decode "
            f"({type(exc).__name__})"
        ) from exc
    if decoded.amount_msat is None:
        raise InvoiceMismatch(f"the {kind} invoice source returned a BOLT11 with no amount")
    if int(decoded.amount_msat) != amount_msat:
        raise InvoiceMismatch(
            f"the {kind} invoice source returned a BOLT11 for {int(decoded.amount_msat)} msat; "
            f"we asked for {amount_msat} msat"
        )
    decoded_hash = decoded.payment_hash.lower()
    if payment_hash is not None and normal_hash(payment_hash) != decoded_hash:
        raise InvoiceMismatch(
            f"the {kind} invoice source said payment hash {payment_hash[:16]}… but its BOLT11 "
            f"carries {decoded_hash[:16]}…"
        )
    expires = decoded.date + decoded.expiry
    if expires <= time.time():
        raise InvoiceMismatch(f"the {kind} invoice source returned a BOLT11 that has expired")
    return Invoice(
        bolt11=text,
        payment_hash=decoded_hash,
        id=invoice_id,
        amount_msat=amount_msat,
        expires_at=datetime.fromtimestamp(expires, UTC),
    )


def normal_hash(value: str) -> str:
    """Lower-case hex of a 32-byte hash as a source wrote it (any case)."""
    return value.strip().lower()


def checked_preimage(preimage: object, payment_hash: str, kind: str) -> str | None:
    """The preimage as lower-case hex when it proves payment of ``payment_hash``.

    ``None`` when the source gave none (or LNbits' all-zero placeholder); InvoiceMismatch when it
    gave one that does not hash to the payment hash.
    """
    if preimage is None or preimage == "":
        return None
    if not isinstance(preimage, str) or not _HEX64.fullmatch(preimage.lower()):
        raise InvoiceMismatch(f"the {kind} invoice source returned a preimage that is not hex")
    value = preimage.lower()
    if value == _ZERO_PREIMAGE:
        return None
    if hashlib.sha256(bytes.fromhex(value)).hexdigest() != payment_hash:
        raise InvoiceMismatch(
            f"the {kind} invoice source returned a preimage that does not hash to the "
            "invoice's payment hash"
        )
    return value


def same_bolt11(reported: object, invoice: Invoice, kind: str) -> None:
    """Raise InvoiceMismatch when a lookup answer names another BOLT11 than ours."""
    if isinstance(reported, str) and reported and reported.lower() != invoice.bolt11.lower():
        raise InvoiceMismatch(
            f"the {kind} invoice source answered the lookup with another BOLT11 than the one it "
            "made for us"
        )
