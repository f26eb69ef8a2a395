"""LNURL-withdraw client for Bolt Card charges (issue 8): URL handling, the withdrawRequest,
the claim with its PIN rule, and typed errors. Pure protocol logic on an injected
`httpx.Client`; the reader, the outbox and the invoice source are wired by `station.app`.

Typical use by a charge::

    req = client.fetch(card_url)            # nothing claimed yet
    check_amount(req, amount_msat)          # before making the invoice
    if needs_pin(req, amount_msat): pin = ask_customer()
    invoice = source.create(amount_msat, ...)
    outbox.write(claim "sending")           # before the callback goes out
    result = client.claim(req, invoice.bolt11, amount_msat=amount_msat, pin=pin)
"""

from station.claim.client import LnurlWithdrawClient
from station.claim.errors import (
    AmountOutOfRange,
    BadWithdrawRequest,
    ClaimError,
    ClaimRefused,
    HostNotAllowed,
    InsecureScheme,
    InvalidInvoice,
    InvalidLnurl,
    InvalidPin,
    IssuerMisbehaved,
    IssuerUnreachable,
    NothingToWithdraw,
    OutcomeUnknown,
    PinRequired,
    RedirectRefused,
    WrongPin,
)
from station.claim.lnurl import HostPolicy, decode_bech32_lnurl, resolve_card_url, with_query
from station.claim.withdraw import (
    CallbackResult,
    WithdrawRequest,
    check_amount,
    check_pin_format,
    needs_pin,
    parse_callback_answer,
    parse_withdraw_request,
)

__all__ = [
    "AmountOutOfRange",
    "BadWithdrawRequest",
    "CallbackResult",
    "ClaimError",
    "ClaimRefused",
    "HostNotAllowed",
    "HostPolicy",
    "InsecureScheme",
    "InvalidInvoice",
    "InvalidLnurl",
    "InvalidPin",
    "IssuerMisbehaved",
    "IssuerUnreachable",
    "LnurlWithdrawClient",
    "NothingToWithdraw",
    "OutcomeUnknown",
    "PinRequired",
    "RedirectRefused",
    "WithdrawRequest",
    "WrongPin",
    "check_amount",
    "check_pin_format",
    "decode_bech32_lnurl",
    "needs_pin",
    "parse_callback_answer",
    "parse_withdraw_request",
    "resolve_card_url",
    "with_query",
]
