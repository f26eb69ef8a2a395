"""The one small interface every invoice source implements, and the errors they raise.

Why an interface: the claim flow needs exactly two things from the merchant's Lightning backend
(make an invoice for this amount, and later tell whether it was paid), whatever the backend is:
BTCPay, LNbits, LND, Core Lightning or the demo wallet. Everything else about those APIs stays
inside their own module.

Errors say whose fault it is and what to change, and never carry the key:

- :class:`InvoiceSourceUnavailable`: the source could not be reached or failed (network, 5xx,
  timeout, an answer that is not the API we expected). Check ``[invoices] url``.
- :class:`InvoiceSourceRefused`: the source said no (401/403: the key is wrong or lacks a
  permission; other 4xx: the source's own words).
- :class:`InvoiceMismatch`: the source answered, but what it gave us is not what we asked for
  (the BOLT11 does not decode, or its amount or payment hash differ). Never pay attention to such
  an invoice: hand out nothing built from it.
- :class:`InvoiceSourceMisconfigured`: the settings themselves are unusable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

InvoiceState = Literal["paid", "unpaid", "expired"]

# Bounds on what the station asks for. A caller outside them has a bug; the sources never see it.
MAX_AMOUNT_MSAT = 10**13  # 100 BTC: no Bolt Card charge comes near it
MAX_MEMO_CHARS = 200  # the tracker's claim record keeps at most 200 characters of memo
MIN_EXPIRY_S = 10
MAX_EXPIRY_S = 7 * 24 * 3600


class InvoiceSourceError(Exception):
    """Base of every invoice-source error. The message is safe to show and log (no key)."""


class InvoiceSourceUnavailable(InvoiceSourceError):
    """The source could not be reached, timed out, failed (5xx) or answered something that is
    not its API. The message names the URL setting to check."""


class InvoiceSourceRefused(InvoiceSourceError):
    """The source refused the request: a wrong key or missing permission (401/403), or another
    4xx with the source's own words."""


class InvoiceMismatch(InvoiceSourceError):
    """The source's answer contradicts what we asked for or what it said itself: a BOLT11 that
    does not decode, a different amount or payment hash, or a preimage that does not hash to the
    payment hash."""


class InvoiceSourceMisconfigured(InvoiceSourceError, ValueError):
    """The invoice settings are unusable; the message names the setting to fill or fix."""


def shorten(bolt11: str, keep: int = 24) -> str:
    """A BOLT11 short enough for a repr or a log line (it is public, only long)."""
    return bolt11 if len(bolt11) <= keep + 8 else f"{bolt11[:keep]}…{bolt11[-6:]}"


@dataclass(frozen=True)
class Invoice:
    """An invoice the merchant's source made for us, already decoded and checked.

    ``payment_hash`` is lower-case hex taken from the decoded BOLT11 (not from the source's
    word); ``id`` is whatever the source needs to look it up again (BTCPay's invoice id, LNbits'
    checking id, the CLN label, the hash for LND); ``expires_at`` is timezone-aware UTC and comes
    from the signed invoice itself.
    """

    bolt11: str
    payment_hash: str
    id: str
    amount_msat: int
    expires_at: datetime

    def __repr__(self) -> str:
        return (
            f"Invoice(bolt11={shorten(self.bolt11)!r}, payment_hash={self.payment_hash!r}, "
            f"id={self.id!r}, amount_msat={self.amount_msat}, "
            f"expires_at={self.expires_at.isoformat()!r})"
        )


@dataclass(frozen=True)
class InvoiceStatus:
    """What the source says about an invoice now. ``preimage`` (hex, only when paid, already
    checked against the payment hash) is a secret proof of payment: kept out of repr."""

    state: InvoiceState
    preimage: str | None = field(default=None, repr=False)

    @property
    def paid(self) -> bool:
        return self.state == "paid"


class InvoiceSource(Protocol):
    """Where the merchant's invoices come from. Implementations are synchronous and use the
    ``httpx.Client`` they were given (so tests can hand them a ``MockTransport``)."""

    kind: str

    def create(self, amount_msat: int, memo: str, expiry_s: int) -> Invoice:
        """Make a fresh invoice for exactly ``amount_msat``; raise an InvoiceSourceError."""
        ...

    def lookup(self, invoice: Invoice) -> InvoiceStatus:
        """Ask the source whether ``invoice`` is paid, unpaid or expired."""
        ...


def check_request(amount_msat: int, memo: str, expiry_s: int) -> None:
    """Refuse a request no source should see (a bug in the caller, hence ValueError)."""
    if isinstance(amount_msat, bool) or not isinstance(amount_msat, int):
        raise ValueError("amount_msat must be an int")
    if not 1 <= amount_msat <= MAX_AMOUNT_MSAT:
        raise ValueError(f"amount_msat must be within 1..{MAX_AMOUNT_MSAT}")
    if not isinstance(memo, str) or len(memo) > MAX_MEMO_CHARS:
        raise ValueError(f"memo must be a string of at most {MAX_MEMO_CHARS} characters")
    if isinstance(expiry_s, bool) or not isinstance(expiry_s, int):
        raise ValueError("expiry_s must be an int")
    if not MIN_EXPIRY_S <= expiry_s <= MAX_EXPIRY_S:
        raise ValueError(f"expiry_s must be within {MIN_EXPIRY_S}..{MAX_EXPIRY_S} seconds")
