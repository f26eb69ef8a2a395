"""Records to a remote tracker's API with the station token.

The ``httpx.Client`` is handed in (base URL, timeouts, transport), so tests can pass one bound
to a local server or an ``httpx.MockTransport``. Answers are mapped at this seam: a final one
(stored, already stored, counter conflict, card blocked, rejected body) becomes a
:class:`~station.uplink.base.Delivery`; anything worth retrying raises
:class:`~station.uplink.base.UplinkUnavailable` — 401 too, because dropping the record would
lose a tap.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from station.uplink.base import (
    BLOCKED,
    CONFLICT,
    DELIVERED,
    REJECTED,
    CardStatus,
    Delivery,
    UplinkUnavailable,
)
from station.uplink.records import ClaimRecord, Record

_PATHS = {"tap": "/api/v1/taps", "claim": "/api/v1/claims"}
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
        return Delivery(DELIVERED, created=bool(_json(resp).get("created", code == 201)))
    detail = _json(resp).get("detail")
    reason = detail.get("reason") if isinstance(detail, dict) else None
    if code == 409:
        last = detail.get("last_counter") if isinstance(detail, dict) else None
        return Delivery(CONFLICT, last_counter=last, detail=reason or "counter_not_increasing")
    if code == 403:
        return Delivery(BLOCKED, detail=reason or "card_blocked")
    if code == 401:
        raise UplinkUnavailable(_BAD_TOKEN)
    if code == 422:
        return Delivery(REJECTED, detail=_short(json.dumps(detail)))
    raise UplinkUnavailable(f"tracker answered HTTP {code}")


def _claim_answer(resp: httpx.Response) -> Delivery:
    code = resp.status_code
    if code in (200, 201):
        return Delivery(DELIVERED, created=bool(_json(resp).get("created", code == 201)))
    if code == 401:
        raise UplinkUnavailable(_BAD_TOKEN)
    if code == 422:
        return Delivery(REJECTED, detail=_short(json.dumps(_json(resp).get("detail"))))
    raise UplinkUnavailable(f"tracker answered HTTP {code} for a claim")


def _json(resp: httpx.Response) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
