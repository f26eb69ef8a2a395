"""The LNURL-withdraw client: GET the card's URL, then send the claim to its callback.

Pure protocol logic on an injected `httpx.Client` (tests hand it a MockTransport; the
station hands it its real client). The card's URL is attacker-controlled, so: allow-listed
hosts only, https (http only for .onion and `insecure_hosts`), redirects followed only
within the same host, bodies read in chunks and cut at `max_body`, a deadline on every
request. The callback is sent at most once per call and never retried here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import httpx

from station.claim.errors import (
    ClaimRefused,
    InvalidInvoice,
    InvalidLnurl,
    IssuerMisbehaved,
    IssuerUnreachable,
    OutcomeUnknown,
    PinRequired,
    RedirectRefused,
)
from station.claim.lnurl import HostPolicy, parse_http_url, resolve_card_url, url_host, with_query
from station.claim.withdraw import (
    CallbackResult,
    WithdrawRequest,
    check_amount,
    check_pin_format,
    needs_pin,
    parse_callback_answer,
    parse_withdraw_request,
)

log = logging.getLogger(__name__)


class RedactQueries(logging.Filter):
    """httpx logs every request's full URL at INFO ("HTTP Request: GET https://…?p=…&c=…
    &k1=…&pin=…"). That query holds the tap's p/c, k1 and the PIN, so this filter, installed
    on the "httpx" logger, cuts the query out of such records before any handler sees them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(_redact(arg) for arg in record.args)
        return True


def _redact(arg: object) -> object:
    if isinstance(arg, httpx.URL):
        return str(arg.copy_with(query=None, fragment=None)) + ("?…" if arg.query else "")
    if isinstance(arg, str) and "://" in arg and "?" in arg:
        return arg.split("?", 1)[0] + "?…"
    return arg


def install_log_redaction() -> None:
    """Idempotent: put RedactQueries on the "httpx" logger once per process."""
    httpx_log = logging.getLogger("httpx")
    if not any(isinstance(f, RedactQueries) for f in httpx_log.filters):
        httpx_log.addFilter(RedactQueries())

MAX_REDIRECTS = 3
BOLT11_LIMIT = 2000
# Errors raised before a single byte of the request left: the callback was not sent.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


class _TooLarge(Exception):
    pass


class _TooSlow(Exception):
    pass


class _Redirected(Exception):
    """The callback was answered with a redirect (never followed: it would send it again)."""


class LnurlWithdrawClient:
    """Fetch a card's withdrawRequest and claim it with an invoice.

    `allowed_hosts`: the only issuer hosts ever contacted (empty: none). `insecure_hosts`:
    hosts that may be reached over plain http (a local test issuer). `max_body`: answers
    longer than this are refused without being read further. `timeout`: seconds per request,
    connect to last byte (BTCPay may hold the callback up to ~10 s while it pays).
    """

    def __init__(
        self,
        http: httpx.Client,
        *,
        allowed_hosts: Iterable[str],
        insecure_hosts: Iterable[str] = (),
        max_body: int = 64 * 1024,
        timeout: float = 30.0,
    ) -> None:
        install_log_redaction()
        self._http = http
        self.policy = HostPolicy.build(allowed_hosts, insecure_hosts)
        self.max_body = max_body
        self.timeout = timeout

    # -- the two steps -------------------------------------------------------------------

    def fetch(self, card_url: str) -> WithdrawRequest:
        """GET the card's LNURL and validate the withdrawRequest. Nothing is claimed here.

        Raises InvalidLnurl, InsecureScheme, HostNotAllowed (also for the callback's host),
        RedirectRefused, IssuerUnreachable, IssuerMisbehaved / BadWithdrawRequest,
        ClaimRefused (the issuer's ERROR, e.g. a replayed tap), NothingToWithdraw.
        """
        url = resolve_card_url(card_url, self.policy)
        log.debug("lnurlw fetch host=%s path=%s", url_host(url), url.path)
        try:
            body = self._get(url, follow_same_host=True)
        except (_TooLarge, _TooSlow) as exc:
            raise IssuerMisbehaved(f"the issuer's answer from {url_host(url)!r} {exc}") from None
        except httpx.HTTPError as exc:
            raise IssuerUnreachable(
                f"no answer from {url_host(url)!r} ({type(exc).__name__}); nothing was claimed"
            ) from None
        return parse_withdraw_request(body, self.policy)

    def claim(
        self, req: WithdrawRequest, bolt11: str, *, amount_msat: int, pin: str | None = None
    ) -> CallbackResult:
        """Send the claim (k1, pr and, when required, pin) to the callback, once.

        Before sending, raises AmountOutOfRange, PinRequired, InvalidPin, InvalidInvoice,
        HostNotAllowed / InsecureScheme, IssuerUnreachable (could not connect): nothing sent.
        After sending: ClaimRefused / WrongPin (the issuer's ERROR), or OutcomeUnknown
        (no usable answer; never resend, watch the invoice).
        """
        check_amount(req, amount_msat)
        _check_bolt11(bolt11)
        send_pin = needs_pin(req, amount_msat)
        if send_pin:
            if pin is None:
                assert req.pin_limit_msat is not None
                raise PinRequired(req.pin_limit_msat)
            check_pin_format(pin)
        params = [("k1", req.k1), ("pr", bolt11)]
        if send_pin and pin is not None:
            params.append(("pin", pin))
        try:
            url = parse_http_url(with_query(req.callback, params))
        except InvalidLnurl as exc:
            raise ClaimRefused(f"the claim URL cannot be built: {exc}", by_issuer=False) from None
        self.policy.check(url)
        host = url_host(url)
        log.debug("lnurlw claim host=%s path=%s amount_msat=%d pin=%s",
                  host, url.path, amount_msat, "yes" if send_pin else "no")
        try:
            body = self._get(url, follow_same_host=False)
        except _NOT_SENT as exc:
            raise IssuerUnreachable(
                f"could not connect to {host!r} ({type(exc).__name__}); the claim was not sent"
            ) from None
        except _Redirected:
            raise OutcomeUnknown(
                f"{host!r} answered the claim with a redirect, not followed"
            ) from None
        except _TooLarge:
            raise OutcomeUnknown(f"{host!r} answered the claim with an oversized body") from None
        except _TooSlow:
            raise OutcomeUnknown(f"{host!r} did not finish answering within the timeout") from None
        except httpx.HTTPError as exc:
            raise OutcomeUnknown(f"{type(exc).__name__} from {host!r} after sending") from None
        secrets = (req.k1, pin) if (send_pin and pin) else (req.k1,)
        return parse_callback_answer(body, pin_sent=send_pin, secrets=secrets)

    # -- HTTP ----------------------------------------------------------------------------

    def _get(self, url: httpx.URL, *, follow_same_host: bool) -> bytes:
        """GET `url` and return at most `max_body` bytes of body, whatever the status.

        With `follow_same_host`, a redirect is followed only within the same host; one to
        another host raises RedirectRefused without contacting it. Without it (the
        callback), any redirect raises _Redirected.
        """
        deadline = time.monotonic() + self.timeout
        origin = url_host(url)
        for _ in range(MAX_REDIRECTS + 1):
            request = self._http.build_request(
                "GET", url, headers={"Accept": "application/json", "Accept-Encoding": "identity"},
                timeout=httpx.Timeout(self.timeout),
            )
            response = self._http.send(request, stream=True, follow_redirects=False)
            try:
                location = response.headers.get("location")
                if response.is_redirect and location is not None:
                    if not follow_same_host:
                        raise _Redirected()
                    url = self._redirect_target(url, location, origin)
                    continue
                return self._read_limited(response, deadline)
            finally:
                response.close()
        raise IssuerMisbehaved(f"more than {MAX_REDIRECTS} redirects from {origin!r}")

    def _redirect_target(self, url: httpx.URL, location: str, origin: str) -> httpx.URL:
        try:
            target = url.join(location)
        except (httpx.InvalidURL, UnicodeError, ValueError):
            raise IssuerMisbehaved(f"{origin!r} redirected to an invalid URL") from None
        if not target.raw_host or url_host(target) != origin:
            raise RedirectRefused(origin, url_host(target) if target.raw_host else "(none)")
        self.policy.check(target)  # e.g. https -> http downgrade on a clearnet host
        return target

    def _read_limited(self, response: httpx.Response, deadline: float) -> bytes:
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            # We asked for identity; a compressed answer could expand far past max_body.
            raise _TooLarge(f"is compressed ({encoding[:20]}) although identity was asked for")
        length = response.headers.get("content-length")
        if length is not None and length.strip().isdigit() and int(length) > self.max_body:
            raise _TooLarge(f"announces {int(length)} bytes (limit {self.max_body})")
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():  # identity only (checked above)
            size += len(chunk)
            if size > self.max_body:
                raise _TooLarge(f"is longer than {self.max_body} bytes")
            chunks.append(chunk)
            if time.monotonic() > deadline:
                raise _TooSlow(f"took longer than {self.timeout:g} s")
        return b"".join(chunks)


def _check_bolt11(bolt11: str) -> None:
    if (
        not isinstance(bolt11, str)
        or not 10 <= len(bolt11) <= BOLT11_LIMIT
        or not bolt11[:2].lower() == "ln"
        or not bolt11.isascii()
        or not bolt11.isalnum()
    ):
        raise InvalidInvoice("the invoice is not a BOLT11 string; nothing was sent")
