"""The withdrawRequest (LUD-03) and the callback's answer: parse, validate, decide.

Bodies are parsed whatever the HTTP status (LUD-01: status codes and headers carry no
meaning; BTCPay sends its ERRORs with HTTP 400). Unknown fields are ignored (LUD-14/19
`balanceCheck`, `currentBalance`, `payLink`; anything an issuer adds later).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Literal

from station.claim.errors import (
    AmountOutOfRange,
    BadWithdrawRequest,
    ClaimRefused,
    InvalidLnurl,
    InvalidPin,
    IssuerMisbehaved,
    NothingToWithdraw,
    OutcomeUnknown,
    WrongPin,
    clean_reason,
)
from station.claim.lnurl import HostPolicy, parse_http_url, url_host

K1_LIMIT = 1000
DESCRIPTION_LIMIT = 640
MAX_MSAT = 21_000_000 * 100_000_000 * 1000  # every bitcoin there will ever be, in msat
_PIN = re.compile(r"[0-9]{4,8}")


@dataclass(frozen=True)
class WithdrawRequest:
    """A validated withdrawRequest. `k1` and the callback's query are secrets of the tap
    (BTCPay's k1 is "<p>-<c>" and its callback carries p and c): repr shows neither."""

    callback: str = field(repr=False)
    k1: str = field(repr=False)
    min_msat: int
    max_msat: int
    issuer_host: str
    pin_limit_msat: int | None = None
    default_description: str = ""

    @property
    def k1_hash(self) -> str:
        """sha256 hex of k1: what the claim record stores instead of k1 itself."""
        return hashlib.sha256(self.k1.encode("utf-8")).hexdigest()

    @property
    def callback_path(self) -> str:
        """The callback without its query: safe for logs."""
        return parse_http_url(self.callback).copy_with(query=None, fragment=None).path

    def __repr__(self) -> str:
        return (
            f"WithdrawRequest(issuer_host={self.issuer_host!r}, "
            f"callback_path={self.callback_path!r}, k1_hash={self.k1_hash[:12]!r}, "
            f"min_msat={self.min_msat}, max_msat={self.max_msat}, "
            f"pin_limit_msat={self.pin_limit_msat}, "
            f"default_description={self.default_description!r})"
        )


@dataclass(frozen=True)
class CallbackResult:
    """The issuer accepted the claim. "ok": it will pay (LNbits has already paid; the Go
    service and BTCPay pay asynchronously). "pending": it said OK with a reason (BTCPay:
    in flight, or waiting for approval): watch the invoice. `reason` is the issuer's words."""

    status: Literal["ok", "pending"]
    reason: str | None = None


def check_amount(req: WithdrawRequest, amount_msat: int) -> None:
    """Raise AmountOutOfRange unless min <= amount <= max. Run it BEFORE making the invoice."""
    if isinstance(amount_msat, bool) or not isinstance(amount_msat, int):
        raise TypeError("amount_msat must be an int (millisatoshi)")
    if amount_msat <= 0 or not req.min_msat <= amount_msat <= req.max_msat:
        raise AmountOutOfRange(amount_msat, req.min_msat, req.max_msat)


def needs_pin(req: WithdrawRequest, amount_msat: int) -> bool:
    """True when the issuer sent pinLimit and the amount reaches it (Bolt Card PIN rule)."""
    return req.pin_limit_msat is not None and amount_msat >= req.pin_limit_msat


def check_pin_format(pin: str) -> None:
    """A PIN is 4 to 8 ASCII digits; anything else is refused before it is sent."""
    if not isinstance(pin, str) or not _PIN.fullmatch(pin):
        raise InvalidPin()


def load_json_object(body: bytes) -> dict[str, object] | None:
    """The body as a JSON object, or None when it is not one (any bytes are accepted)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are both
        return None
    return data if isinstance(data, dict) else None


def _is_status(data: dict[str, object], value: str) -> bool:
    status = data.get("status")
    return isinstance(status, str) and status.strip().upper() == value


def _msat(data: dict[str, object], key: str, *, required: bool) -> int | None:
    value = data.get(key)
    if value is None:
        if required:
            raise BadWithdrawRequest(f"withdrawRequest lacks {key}")
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadWithdrawRequest(f"withdrawRequest {key} is not a whole number of msat")
    if not 0 <= value <= MAX_MSAT:
        raise BadWithdrawRequest(f"withdrawRequest {key} is out of range")
    return value


def parse_withdraw_request(body: bytes, policy: HostPolicy) -> WithdrawRequest:
    """Validate the first answer of an issuer. Raises ClaimRefused for an ERROR body,
    NothingToWithdraw for min = max = 0, BadWithdrawRequest / IssuerMisbehaved otherwise."""
    data = load_json_object(body)
    if data is None:
        raise IssuerMisbehaved("the issuer's answer is not a JSON object")
    if _is_status(data, "ERROR"):
        raise ClaimRefused(clean_reason(data.get("reason")), by_issuer=True)
    if data.get("tag") != "withdrawRequest":
        raise BadWithdrawRequest("the issuer's answer is not a withdrawRequest (tag)")
    k1 = data.get("k1")
    if not isinstance(k1, str) or not k1 or len(k1) > K1_LIMIT:
        raise BadWithdrawRequest(f"withdrawRequest k1 must be a string of 1 to {K1_LIMIT}")
    callback = data.get("callback")
    if not isinstance(callback, str):
        raise BadWithdrawRequest("withdrawRequest callback is not a string")
    try:
        callback_url = parse_http_url(callback)
    except InvalidLnurl as exc:
        raise BadWithdrawRequest(f"withdrawRequest callback: {exc}") from exc
    policy.check(callback_url)  # HostNotAllowed / InsecureScheme: nothing will be sent
    min_msat = _msat(data, "minWithdrawable", required=True)
    max_msat = _msat(data, "maxWithdrawable", required=True)
    assert min_msat is not None and max_msat is not None
    if min_msat == max_msat == 0:
        raise NothingToWithdraw()
    if min_msat > max_msat:
        raise BadWithdrawRequest("withdrawRequest minWithdrawable is above maxWithdrawable")
    pin_limit = _msat(data, "pinLimit", required=False)
    return WithdrawRequest(
        callback=str(callback_url),
        k1=k1,
        min_msat=min_msat,
        max_msat=max_msat,
        issuer_host=url_host(callback_url),
        pin_limit_msat=pin_limit,
        default_description=clean_reason(data.get("defaultDescription"), DESCRIPTION_LIMIT),
    )


def parse_callback_answer(body: bytes, *, pin_sent: bool, secrets: tuple[str, ...] = ()) -> (
    CallbackResult
):
    """Decide what the callback's answer means. The claim was sent, so anything that is
    neither OK nor ERROR is OutcomeUnknown, never a refusal. `secrets` (k1, PIN) are cut out
    of the issuer's reason before it is kept anywhere."""
    data = load_json_object(body)
    if data is None:
        raise OutcomeUnknown("the issuer's answer to the claim is not a JSON object")

    def reason() -> str:
        text = clean_reason(data.get("reason"))
        for secret in secrets:
            if secret:
                text = text.replace(secret, "…")
        return text

    if _is_status(data, "OK"):
        text = reason()
        return CallbackResult("pending", text) if text else CallbackResult("ok", None)
    if _is_status(data, "ERROR"):
        text = reason()
        if pin_sent and "pin" in text.lower():
            raise WrongPin(text, by_issuer=True, callback_sent=True)
        raise ClaimRefused(text, by_issuer=True, callback_sent=True)
    raise OutcomeUnknown("the issuer's answer to the claim has no status OK or ERROR")
