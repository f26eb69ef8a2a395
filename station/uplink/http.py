"""Records to a remote tracker's API with the station token.

The ``httpx.Client`` is handed in (base URL, timeouts, transport), so tests can pass one bound
to a local server or an ``httpx.MockTransport``. Answers are mapped at this seam: a final one
(stored, already stored, counter conflict, card blocked, and any other 4xx but 401/408/429:
a body the tracker will never store) becomes a :class:`~station.uplink.base.Delivery`;
anything worth retrying raises :class:`~station.uplink.base.UplinkUnavailable` with the
tracker's ``Retry-After`` — 401 too, because dropping the record would lose a tap.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx

from station.uplink.base import (
    BLOCKED,
    CONFLICT,
    DELIVERED,
    REJECTED,
    TRANSIENT_4XX,
    BatchUnsupported,
    CardStatus,
    Delivery,
    Heartbeat,
    UplinkUnavailable,
)
from station.uplink.records import ClaimRecord, Record, TapRecord

_PATHS = {"tap": "/api/v1/taps", "claim": "/api/v1/claims"}
_BATCH_PATH = "/api/v1/taps/batch"
_HEARTBEAT_PATH = "/api/v1/stations/heartbeat"
_BAD_TOKEN = (
    "the tracker refused the station token (401); set STATION_TRACKER_TOKEN to a "
    "token from `tracker stations add NAME`"
)


class HttpUplink:
    """Posts records to the tracker's ingest API; asks it for a card's status."""

    def __init__(self, client: httpx.Client, token: str) -> None:
        self._client = client
        self._headers = {"Authorization": f"Bearer {token}"}

    def close(self) -> None:
        self._client.close()

    def _request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        try:
            return self._client.request(method, url, headers=self._headers, **kw)
        except httpx.HTTPError as exc:
            raise UplinkUnavailable(f"{type(exc).__name__} talking to the tracker") from None

    def send(self, record: Record) -> Delivery:
        resp = self._request("POST", _PATHS[record.kind], json=record.to_body())
        if isinstance(record, ClaimRecord):
            return _claim_answer(resp)
        return _tap_answer(resp)

    def send_batch(self, records: Sequence[TapRecord]) -> list[Delivery]:
        """``POST /api/v1/taps/batch``: one answer per tap, for the prefix the tracker did."""
        resp = self._request("POST", _BATCH_PATH, json={"taps": [r.to_body() for r in records]})
        if resp.status_code in (404, 405):
            raise BatchUnsupported(f"the tracker has no batch route (HTTP {resp.status_code})")
        if resp.status_code != 200:
            delivery = _other_answer(resp, "batch")  # raises for anything transient
            raise BatchUnsupported(f"the tracker refused the batch as a whole: {delivery.detail}")
        results = _json(resp).get("results")
        if not isinstance(results, list) or not results or len(results) > len(records):
            raise UplinkUnavailable("the tracker's batch answer was not understood")
        return [_batch_item(item) for item in results]

    def send_heartbeat(self, beat: Heartbeat) -> None:
        """``POST /api/v1/stations/heartbeat``; anything but 200 raises (retried next period)."""
        resp = self._request("POST", _HEARTBEAT_PATH, json=beat.to_body())
        if resp.status_code == 200:
            return
        if resp.status_code == 401:
            raise UplinkUnavailable(_BAD_TOKEN)
        raise UplinkUnavailable(
            f"the tracker did not take the heartbeat (HTTP {resp.status_code}: "
            f"{tracker_reason(resp)})", retry_after=retry_after(resp))

    def register_card(self, uid: str, *, card_id: str | None = None,
                      alias: str | None = None) -> str:
        """Tell the tracker about a card just provisioned; its status there."""
        body = {"uid": uid, "card_id": card_id, "alias": alias}
        return self._card_answer(self._request("POST", "/api/v1/cards/register", json=body))

    def mark_wiped(self, uid: str) -> str:
        """Tell the tracker a card was wiped; its status there (``wiped``)."""
        return self._card_answer(self._request("POST", f"/api/v1/cards/{uid}/wiped"))

    @staticmethod
    def _card_answer(resp: httpx.Response) -> str:
        if resp.status_code in (200, 201):
            return str(_json(resp).get("status", "unknown"))
        if resp.status_code == 401:
            raise UplinkUnavailable("the tracker refused the station token (401)")
        if resp.status_code == 404:
            raise UplinkUnavailable("the tracker does not know this card (404)")
        raise UplinkUnavailable(f"tracker answered HTTP {resp.status_code}")

    def card_status(self, uid: str) -> CardStatus:
        resp = self._request("GET", f"/api/v1/cards/{uid}/status")
        if resp.status_code == 404:
            return CardStatus("unknown", None)
        if resp.status_code != 200:
            raise UplinkUnavailable(f"tracker answered HTTP {resp.status_code} for card status")
        data = _json(resp)
        last = data.get("last_counter")
        return CardStatus(str(data.get("status", "unknown")), None if last is None else int(last))


def _tap_answer(resp: httpx.Response) -> Delivery:
    code = resp.status_code
    if code in (200, 201):
        return Delivery(DELIVERED, created=bool(_json(resp).get("created", code == 201)),
                        status=code)
    detail = _json(resp).get("detail")
    reason = detail.get("reason") if isinstance(detail, dict) else None
    if code == 409:
        last = detail.get("last_counter") if isinstance(detail, dict) else None
        return Delivery(CONFLICT, last_counter=last, detail=reason or "counter_not_increasing",
                        status=code)
    if code == 403:
        return Delivery(BLOCKED, detail=reason or "card_blocked", status=code)
    return _other_answer(resp, "tap")


def _batch_item(item: Any) -> Delivery:
    """One result of a batch, read like the single route's answer with that status."""
    if not isinstance(item, dict) or not isinstance(item.get("status"), int):
        raise UplinkUnavailable("the tracker's batch answer was not understood")
    code = int(item["status"])
    body = json.dumps({k: v for k, v in item.items() if k != "status"}).encode()
    return _tap_answer(httpx.Response(code, content=body,
                                      headers={"content-type": "application/json"}))


def _claim_answer(resp: httpx.Response) -> Delivery:
    code = resp.status_code
    if code in (200, 201):
        return Delivery(DELIVERED, created=bool(_json(resp).get("created", code == 201)),
                        status=code)
    return _other_answer(resp, "claim")


def _other_answer(resp: httpx.Response, kind: str) -> Delivery:
    """The rule for every answer a kind gives no meaning of its own: any 4xx but 401/408/429
    is final (the record is dead: the tracker will never store this body); 401/408/429, 5xx
    and anything else are retried, honouring ``Retry-After``."""
    code = resp.status_code
    if code == 401:
        raise UplinkUnavailable(_BAD_TOKEN)
    if 400 <= code < 500 and code not in TRANSIENT_4XX:
        return Delivery(REJECTED, detail=tracker_reason(resp), status=code)
    raise UplinkUnavailable(
        f"tracker answered HTTP {code} for a {kind}", retry_after=retry_after(resp)
    )


def tracker_reason(resp: httpx.Response) -> str:
    """The tracker's reason for a refusal, short, without echoing the refused input back
    (FastAPI's ``input`` field): ``reason: message`` or ``field.path: message; …``."""
    detail = _json(resp).get("detail")
    if isinstance(detail, dict):
        parts = [str(detail[k]) for k in ("reason", "message") if detail.get(k)]
        return _short(": ".join(parts) or json.dumps(detail))
    if isinstance(detail, list):
        items = []
        for err in detail[:5]:
            if isinstance(err, dict):  # the tracker's {field, reason} or FastAPI's {loc, msg}
                loc = err.get("field") or ".".join(
                    str(x) for x in err.get("loc", ()) if x != "body"
                )
                msg = str(err.get("reason") or err.get("msg") or "invalid")
                items.append(f"{loc}: {msg}" if loc else msg)
        return _short("; ".join(items) or "invalid body")
    if isinstance(detail, str):
        return _short(detail)
    return f"HTTP {resp.status_code}"


def retry_after(resp: httpx.Response, ceiling: float = 300.0) -> float | None:
    """``Retry-After`` in seconds (the delta-seconds form; a date is ignored), capped."""
    raw = resp.headers.get("retry-after", "").strip()
    try:
        seconds = float(raw)
    except ValueError:
        return None
    if seconds != seconds or seconds < 0:  # NaN, negative
        return None
    return min(seconds, ceiling)


def _json(resp: httpx.Response) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
