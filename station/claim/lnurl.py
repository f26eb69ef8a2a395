"""Turn what a card (or a QR) carries into the https URL to GET, and decide which hosts
and schemes a claim may go to.

- LUD-17: `lnurlw://host/path?...` means `https://host/path?...`, or `http://` for .onion.
- LUD-01: `LNURL1...` is the bech32 encoding of that URL (all upper or all lower case,
  optionally behind `lightning:`). The `bech32` package's `bech32_decode` refuses strings
  over 90 characters (a BIP-173 address rule), so we split and check the checksum with its
  lower-level helpers ourselves.
- `http://` is used only for .onion hosts and for hosts in `insecure_hosts` (a local test
  issuer); a card's `lnurlw://` for such a host maps to `http://` too.
- Hosts are compared exactly (no subdomains), case-insensitively, after IDNA encoding.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

import bech32
import httpx

from station.claim.errors import HostNotAllowed, InsecureScheme, InvalidLnurl

MAX_URL_LENGTH = 4096


def normalize_host(host: str) -> str:
    """The ASCII (IDNA) lower-case form of a host name, without a trailing dot."""
    text = host.strip().rstrip(".").lower()
    if text.startswith("[") and text.endswith("]"):
        return text[1:-1]  # an IPv6 literal; httpx reports it without brackets
    if not text:
        raise InvalidLnurl("empty host name")
    try:
        url = httpx.URL(f"https://{text}/")
    except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
        raise InvalidLnurl(f"not a host name: {text[:80]!r}") from exc
    return url.raw_host.decode("ascii").lower().rstrip(".")


def url_host(url: httpx.URL) -> str:
    """The normalised host of an httpx URL (IDNA ASCII, lower case)."""
    return url.raw_host.decode("ascii").lower().rstrip(".")


def decode_bech32_lnurl(text: str) -> str:
    """Decode a LUD-01 `LNURL1...` string (upper or lower case, never mixed)."""
    if text != text.lower() and text != text.upper():
        raise InvalidLnurl("a bech32 LNURL must be all upper or all lower case")
    text = text.lower()
    pos = text.rfind("1")
    hrp, data_part = text[:pos], text[pos + 1 :]
    if hrp != "lnurl" or len(data_part) < 6:
        raise InvalidLnurl("not a bech32 LNURL")
    charset = bech32.CHARSET
    if any(ch not in charset for ch in data_part):
        raise InvalidLnurl("a bech32 LNURL has a character outside the bech32 alphabet")
    data = [charset.find(ch) for ch in data_part]
    if not bech32.bech32_verify_checksum(hrp, data):
        raise InvalidLnurl("the bech32 LNURL's checksum is wrong (mistyped or damaged)")
    raw = bech32.convertbits(data[:-6], 5, 8, False)
    if raw is None:
        raise InvalidLnurl("the bech32 LNURL's data is not whole bytes")
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidLnurl("the bech32 LNURL does not hold UTF-8 text") from exc


@dataclass(frozen=True)
class HostPolicy:
    """Which hosts a request may go to, and which of them may use plain http://.

    An empty `allowed_hosts` allows nothing: no claim is ever sent.
    """

    allowed_hosts: frozenset[str]
    insecure_hosts: frozenset[str] = frozenset()

    @classmethod
    def build(cls, allowed_hosts: Iterable[str], insecure_hosts: Iterable[str] = ()) -> HostPolicy:
        def norm(hosts: Iterable[str]) -> frozenset[str]:
            return frozenset(normalize_host(h) for h in hosts if h.strip())

        return cls(norm(allowed_hosts), norm(insecure_hosts))

    def plain_http_ok(self, host: str) -> bool:
        return host.endswith(".onion") or host in self.insecure_hosts

    def check(self, url: httpx.URL) -> None:
        """Raise unless a request to `url` is allowed (scheme first, then host)."""
        host = url_host(url)
        if url.scheme == "http":
            if not self.plain_http_ok(host):
                raise InsecureScheme("http", host)
        elif url.scheme != "https":
            raise InsecureScheme(url.scheme or "(none)", host)
        if host not in self.allowed_hosts:
            raise HostNotAllowed(host, empty=not self.allowed_hosts)


def parse_http_url(text: str) -> httpx.URL:
    """Parse an absolute http(s) URL strictly; raise InvalidLnurl otherwise."""
    if len(text) > MAX_URL_LENGTH:
        raise InvalidLnurl(f"URL longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise InvalidLnurl("URL contains whitespace or control characters")
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
        raise InvalidLnurl("not a valid URL") from exc
    if not url.is_absolute_url or not url.raw_host:
        raise InvalidLnurl("URL has no host")
    if url.userinfo:
        raise InvalidLnurl("URL carries user info (user:password@); refused")
    return url


def resolve_card_url(raw: str, policy: HostPolicy) -> httpx.URL:
    """The URL to GET for what a card or QR carries; checked against `policy`.

    Accepts `lnurlw://…`, `LNURL1…`/`lnurl1…` (optionally `lightning:`-prefixed) and plain
    `https://…` (LUD-17 fallback). Raises InvalidLnurl, InsecureScheme or HostNotAllowed.
    """
    text = raw.strip()
    if text[:10].lower() == "lightning:":
        text = text[10:].lstrip("/")
    if text[:6].lower() == "lnurl1":
        text = decode_bech32_lnurl(text)
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise InvalidLnurl("not an LNURL-withdraw link (no scheme)")
    scheme = scheme.lower()
    if scheme == "lnurlw":
        url = parse_http_url("https://" + rest)
        if policy.plain_http_ok(url_host(url)):
            url = url.copy_with(scheme="http")
    elif scheme in ("https", "http"):
        url = parse_http_url(scheme + "://" + rest)
    else:
        raise InvalidLnurl(f"scheme {scheme[:20]!r} is not an LNURL-withdraw link")
    policy.check(url)
    return url


def _encode(value: str) -> str:
    return quote(value, safe="-._~")


def with_query(url: str, params: Sequence[tuple[str, str]]) -> str:
    """Append `params` to `url`'s own query string, LUD-03 style (`?` or `&`).

    The existing query is kept byte for byte and in order (httpx's `params=` would replace
    it); our values are percent-encoded; a fragment is dropped (never sent anyway).
    """
    base = url.split("#", 1)[0]
    extra = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in params)
    if not extra:
        return base
    if "?" not in base:
        return f"{base}?{extra}"
    if base.endswith(("?", "&")):
        return base + extra
    return f"{base}&{extra}"
