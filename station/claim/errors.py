"""Typed errors of the LNURL-withdraw client; each one says what happened and what to do.

The one distinction that matters for money: was the callback (the claim carrying our
invoice) sent or not?

- Nothing was sent to the callback: `HostNotAllowed`, `InsecureScheme`, `InvalidLnurl`,
  `BadWithdrawRequest`, `IssuerMisbehaved` (from `fetch`), `AmountOutOfRange`,
  `PinRequired`, `InvalidPin`, `InvalidInvoice`, `IssuerUnreachable`, `NothingToWithdraw`.
  The charge can end (or be retried with a new tap); no money can have moved.
- The callback was sent and the issuer answered definitely: `ClaimRefused` and `WrongPin`.
- The callback was sent and no usable answer came: `OutcomeUnknown`. Never send it again;
  watch the merchant's own invoice until it is paid or expires.

Messages carry hosts and amounts only: never k1, a PIN, a full p/c or a callback query.
"""

from __future__ import annotations

import unicodedata

REASON_LIMIT = 1000  # the tracker's claim record stores at most 1000 characters of reason


def clean_reason(text: object, limit: int = REASON_LIMIT) -> str:
    """An issuer's free text made safe to show and store: control and format characters
    removed (no terminal escapes, no bidi tricks), whitespace collapsed, length limited."""
    if not isinstance(text, str):
        return ""
    kept = (" " if ch.isspace() else ch for ch in text)
    cleaned = "".join(ch for ch in kept if unicodedata.category(ch) not in ("Cc", "Cf", "Cs"))
    cleaned = " ".join(cleaned.split())
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 1] + "…"
    return cleaned


class ClaimError(Exception):
    """Base of every error the claim client raises; catch this to catch them all.

    `callback_sent` tells whether our invoice may have reached the issuer's callback.
    """

    callback_sent: bool = False


class InvalidLnurl(ClaimError):
    """The card's URL is not an LNURL-withdraw link we can use (bad bech32, unknown scheme,
    user info in the URL, no host). The card is misprovisioned or not a Bolt Card."""


class HostNotAllowed(ClaimError):
    """The issuer's host is not in the allow-list, so no claim is sent to it.

    Fill the setting named in `setting` (`allowed_hosts`, env STATION_ALLOWED_HOSTS,
    comma separated) with the issuer's host if you trust it.
    """

    def __init__(self, host: str, setting: str = "allowed_hosts", *, empty: bool = False):
        self.host = host
        self.setting = setting
        self.empty = empty
        env = "STATION_" + setting.upper()
        if empty:
            msg = (
                f"{setting} is empty, so no claim is ever sent; list the issuer's host "
                f"{host!r} in {setting} (env {env}) to charge its cards"
            )
        else:
            msg = (
                f"host {host!r} is not in {setting}; add it to {setting} (env {env}) "
                "if you trust this issuer"
            )
        super().__init__(msg)


class RedirectRefused(HostNotAllowed):
    """The issuer answered with a redirect to another host; redirects are followed only
    within the same host, whatever `allowed_hosts` says."""

    def __init__(self, host: str, target_host: str):
        self.target_host = target_host
        super().__init__(target_host)
        self.args = (
            f"issuer {host!r} redirected to another host {target_host!r}; "
            "redirects are only followed within the same host, so nothing was sent there",
        )

    def __str__(self) -> str:
        return str(self.args[0])


class InsecureScheme(ClaimError):
    """Plain http:// to a clearnet host. Allowed only for .onion hosts and for hosts listed
    in `insecure_hosts` (env STATION_INSECURE_HOSTS), meant for a local test issuer."""

    def __init__(self, scheme: str, host: str):
        self.scheme = scheme
        self.host = host
        super().__init__(
            f"{scheme}:// to {host!r} refused: only https:// is used, except for .onion hosts "
            "and hosts listed in insecure_hosts (env STATION_INSECURE_HOSTS)"
        )


class IssuerMisbehaved(ClaimError):
    """The issuer's answer to the first request is unusable: not JSON, not an object, too
    large, too slow. Nothing was claimed; the issuer must be fixed (or is hostile)."""


class BadWithdrawRequest(IssuerMisbehaved):
    """The issuer's withdrawRequest fails validation (tag, k1, callback, min/max, pinLimit)."""


class IssuerUnreachable(ClaimError):
    """No answer from the issuer before anything was claimed (connection refused, DNS,
    connect timeout, or the first request failed). Safe: nothing was sent to the callback;
    check the network or the issuer, then tap again."""


class AmountOutOfRange(ClaimError):
    """The amount lies outside the issuer's [min, max] (msat). Checked before any invoice
    is made; choose an amount inside the range."""

    def __init__(self, amount_msat: int, min_msat: int, max_msat: int):
        self.amount_msat = amount_msat
        self.min_msat = min_msat
        self.max_msat = max_msat
        super().__init__(
            f"amount {amount_msat} msat is outside the issuer's range "
            f"[{min_msat}, {max_msat}] msat; no invoice was made and nothing was sent"
        )


class PinRequired(ClaimError):
    """The issuer asks for the card's PIN at this amount (pinLimit, msat): ask the customer
    and call `claim` again with `pin=`. Nothing was sent yet."""

    def __init__(self, pin_limit_msat: int):
        self.pin_limit_msat = pin_limit_msat
        super().__init__(
            f"the card requires its PIN for amounts of {pin_limit_msat} msat or more; "
            "ask the customer for it"
        )


class InvalidPin(ClaimError):
    """The PIN typed is not 4 to 8 digits; it was not sent. Ask again."""

    def __init__(self) -> None:
        super().__init__("a PIN is 4 to 8 digits; nothing was sent")


class InvalidInvoice(ClaimError):
    """The invoice handed to `claim` does not look like a BOLT11 string (a bug in the
    invoice source or its caller); nothing was sent."""


class ClaimRefused(ClaimError):
    """The issuer (or, with `by_issuer=False`, the client itself) refused the claim.

    `reason` is the issuer's own words, cleaned and length-limited: show it to the merchant
    and store it. Final: the merchant will not be paid for this tap.
    """

    def __init__(self, reason: str, by_issuer: bool = True, *, callback_sent: bool = False):
        self.reason = clean_reason(reason) or "(the issuer gave no reason)"
        self.by_issuer = by_issuer
        self.callback_sent = callback_sent
        who = "the issuer" if by_issuer else "the station"
        super().__init__(f"{who} refused the claim: {self.reason}")


class NothingToWithdraw(ClaimRefused):
    """The issuer answered min = max = 0 (LUD-03 "Zero balance"): the card has nothing to
    spend. Final for this tap."""

    def __init__(self) -> None:
        super().__init__(
            "the issuer reports nothing to withdraw on this card (minWithdrawable = "
            "maxWithdrawable = 0)",
            by_issuer=True,
        )


class WrongPin(ClaimRefused):
    """The issuer refused a claim that carried a PIN and its reason names the PIN. The
    caller counts attempts (three wrong PINs end the charge) and needs a new tap: the
    issuer's k1 is usually spent."""


class OutcomeUnknown(ClaimError):
    """The claim was sent and no usable answer came back (timeout, dropped connection,
    unreadable or oversized answer, redirect off host). The issuer may pay or not. NEVER
    send the callback again: watch the merchant's invoice until it is paid or expires."""

    callback_sent = True

    def __init__(self, cause: str):
        self.cause = cause
        super().__init__(
            f"the claim was sent but its outcome is unknown ({cause}); do not resend it, "
            "watch the invoice until it is paid or expires"
        )
