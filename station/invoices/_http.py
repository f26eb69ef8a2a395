"""One HTTP exchange with an invoice source, with every failure mapped to our typed errors.

Why one place: each source differs only in paths, headers and JSON shapes; timeouts, size limits,
redirect refusal, status-code mapping and key redaction are the same and are easy to get subtly
wrong five times. The source is a network peer: its body is read up to a limit, its words are
cut short before they reach a message, and the key is scrubbed from them in case it echoes it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from .base import InvoiceSourceRefused, InvoiceSourceUnavailable

TIMEOUT_S = 30.0
MAX_BODY_BYTES = 64 * 1024  # an invoice answer is ~1-3 KB; CLN's filtered listinvoices too
MAX_WORDS = 200  # characters of the source's own error text we repeat

URL_HINT = "check [invoices] url (STATION_INVOICE_URL)"


@dataclass(frozen=True)
class Peer:
    """What a source module tells the exchange about itself, for requests and messages."""

    kind: str  # "btcpay", "lnbits", ...
    base_url: str  # no trailing slash
    key: str  # only used to scrub it from any text we repeat
    permission: str  # the permission the key needs, in the source's own terms
    # Words in an error answer that mean "your credential is refused" even under HTTP 500
    # (LND's REST gateway answers a bad or missing macaroon with 500 and gRPC code 2).
    refused_words: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        """The base URL without user info, query or fragment: safe to show."""
        parts = urlsplit(self.base_url)
        host = parts.hostname or "?"
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"

    def scrub(self, text: str) -> str:
        if self.key and self.key in text:
            text = text.replace(self.key, "[key]")
        return text


def call(
    http: httpx.Client,
    peer: Peer,
    method: str,
    path: str,
    *,
    headers: Mapping[str, str],
    body: Any = None,
) -> tuple[int, Any]:
    """Send one request; return (status, parsed JSON) for a 2xx answer, raise otherwise."""
    url = peer.base_url + path
    try:
        with http.stream(
            method,
            url,
            headers=dict(headers),
            json=body,
            timeout=TIMEOUT_S,
            follow_redirects=False,
        ) as response:
            raw = _read_limited(response, peer)
            status = response.status_code
    except httpx.TimeoutException as exc:
        raise InvoiceSourceUnavailable(
            f"the {peer.kind} invoice source at {peer.where} did not answer within "
            f"{TIMEOUT_S:.0f} s; {URL_HINT} and that the source is running"
        ) from exc
    except httpx.TransportError as exc:
        raise InvoiceSourceUnavailable(
            f"could not reach the {peer.kind} invoice source at {peer.where} "
            f"({type(exc).__name__}); {URL_HINT}"
        ) from exc

    data, parsed = _parse(raw)
    words = peer.scrub(_words(data) if parsed else "")
    lowered = words.lower()
    if status in (401, 403) or (
        status >= 400 and any(w in lowered for w in peer.refused_words)
    ):
        raise InvoiceSourceRefused(
            f"the {peer.kind} invoice source answered HTTP {status}: the key in "
            f"STATION_INVOICE_KEY ([invoices] key) is wrong or lacks permission "
            f"{peer.permission}"
        )
    if 300 <= status < 400:
        raise InvoiceSourceUnavailable(
            f"the {peer.kind} invoice source at {peer.where} answered with a redirect "
            f"(HTTP {status}), which is not followed; set [invoices] url (STATION_INVOICE_URL) "
            "to the address the source really serves"
        )
    said = f": {words}" if words else ""
    if status >= 500 or status < 200:
        raise InvoiceSourceUnavailable(
            f"the {peer.kind} invoice source at {peer.where} failed (HTTP {status}){said}; "
            f"{URL_HINT} and the source's own logs"
        )
    if status >= 400:
        raise InvoiceSourceRefused(
            f"the {peer.kind} invoice source refused the request (HTTP {status}){said}"
        )
    if not parsed:
        raise InvoiceSourceUnavailable(
            f"the {peer.kind} invoice source at {peer.where} answered HTTP {status} with "
            f"something that is not JSON; {URL_HINT}: does it point at the {peer.kind} API?"
        )
    return status, data


def _read_limited(response: httpx.Response, peer: Peer) -> bytes:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_big(peer)
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_big(peer)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_big(peer: Peer) -> InvoiceSourceUnavailable:
    return InvoiceSourceUnavailable(
        f"the {peer.kind} invoice source at {peer.where} sent an answer larger than "
        f"{MAX_BODY_BYTES // 1024} KiB, which is not an invoice; {URL_HINT}"
    )


def _parse(raw: bytes) -> tuple[Any, bool]:
    try:
        return json.loads(raw), True
    except (ValueError, UnicodeDecodeError):
        return None, False


def _words(data: Any) -> str:
    """The source's own error text, if its body carries one, cut short and made printable."""
    text = ""
    if isinstance(data, dict):
        for name in ("detail", "message", "error", "reason"):
            value = data.get(name)
            if isinstance(value, str) and value:
                text = value
                break
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                text = value["message"]
                break
    elif isinstance(data, list) and data and isinstance(data[0], dict):
        # BTCPay's validation errors: [{"path": "amount", "message": "..."}]
        first = data[0]
        text = " ".join(str(first.get(k, "")) for k in ("path", "message")).strip()
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return text[:MAX_WORDS]


def field(data: Any, name: str, kind: str) -> Any:
    """``data[name]`` or an InvoiceSourceUnavailable saying the answer is not the API."""
    if not isinstance(data, dict) or name not in data:
        raise InvoiceSourceUnavailable(
            f"the {kind} invoice source's answer has no {name!r}; {URL_HINT}: does it point "
            f"at the {kind} API?"
        )
    return data[name]


def text_field(data: Any, name: str, kind: str, max_len: int = 4096) -> str:
    value = field(data, name, kind)
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise InvoiceSourceUnavailable(
            f"the {kind} invoice source's {name!r} is not a string of at most {max_len} "
            f"characters; {URL_HINT}"
        )
    return value
