"""Input the tracker can never store is refused at the door, never a 500 (issue 11, item 1).

One table, on SQLite and PostgreSQL: NUL and other control characters in every string field
stations and operators send (taps, claims, payouts, operator PATCHes, query strings, forms),
moments outside 1970..2099 (``0001-01-01T00:00:00+14:00`` overflows when taken to UTC),
amounts, pages and ids past 64 bits, a cursor with a 30-digit id. The API answers 422 with a
field list; a page answers a readable 400 page. A station that got a 500 would retry the
record forever and jam its outbox; a 422 lets it set the record aside.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tracker_testlib import OperatorClient, StationCredentials, count_rows, make_tap

UID = "04A1B2C3D4E5F6"
HTML = {"accept": "text/html"}
BIG_ID = 2**63
HUGE = 2**62
EARLY = "0001-01-01T00:00:00+14:00"
LATE = "9999-12-31T23:59:59-14:00"
YEAR_9999 = "9999-06-01T00:00:00+00:00"
CURSOR_30 = base64.urlsafe_b64encode(b"1764000000000000:" + b"9" * 30).decode().rstrip("=")


def _claim(**kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "claim_id": "ab" * 16,
        "tap_key": f"{UID}:1",
        "state": "claimed",
        "amount_msat": 21_000,
        "memo": "coffee",
        "issuer_host": "pay.example.com",
        "station_time": "2026-11-30T12:00:00+00:00",
    }
    body.update(kw)
    return body


def _payout(**kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"amount_msat": 1000, "tap_idempotency_key": f"{UID}:1"}
    body.update(kw)
    return body


@dataclass(frozen=True)
class World:
    station: TestClient  # posts with the station token
    headers: dict[str, str]
    admin: OperatorClient
    payout_id: int


def _raw(body: dict[str, Any]) -> bytes:
    """JSON with \\u escapes (so a lone surrogate can be sent as the JSON text has it)."""
    return json.dumps(body, ensure_ascii=True).encode()


Send = Callable[[World], Any]


def tap(**kw: Any) -> Send:
    def send(w: World) -> Any:
        body = make_tap(UID, 5, outcome=kw.pop("outcome", "refused"), issuer_host="pay.example")
        body.update(kw)
        return w.station.post("/api/v1/taps", content=_raw(body), headers=_json(w.headers))

    return send


def claim(**kw: Any) -> Send:
    return lambda w: w.station.post(
        "/api/v1/claims", content=_raw(_claim(**kw)), headers=_json(w.headers)
    )


def payout(**kw: Any) -> Send:
    return lambda w: w.station.post(
        "/api/v1/payouts", content=_raw(_payout(**kw)), headers=_json(w.headers)
    )


def station_patch(**kw: Any) -> Send:
    return lambda w: w.station.patch(
        f"/api/v1/payouts/{w.payout_id}", content=_raw(kw), headers=_json(w.headers)
    )


def operator_patch(path: str, **kw: Any) -> Send:
    return lambda w: w.admin.client.patch(
        path.format(pid=w.payout_id),
        content=_raw(kw),
        headers=_json(w.admin.write_headers),
    )


def api_get(path: str, **params: Any) -> Send:
    return lambda w: w.admin.client.get(path, params=params)


def page_get(path: str, **params: Any) -> Send:
    return lambda w: w.admin.client.get(path, params=params, headers=HTML)


def _json(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "content-type": "application/json"}


API_CASES: dict[str, Send] = {
    # taps (the station's outbox stalls on a 500)
    "tap issuer_host NUL": tap(issuer_host="pay\x00.example"),
    "tap issuer_host ESC": tap(issuer_host="pay\x1b[2J.example"),
    "tap issuer_host lone surrogate": tap(issuer_host="pay\ud800.example"),
    "tap idempotency_key NUL": tap(idempotency_key="till-1:\x00abc"),
    "tap reason NUL": tap(reason="bad\x00mac"),
    "tap card_id NUL": tap(card_id="\x00" * 4),
    "tap accepted issuer_host NUL": tap(outcome="accepted", issuer_host="a\x00b"),
    "tap station_time year 1 +14:00": tap(station_time=EARLY),
    "tap station_time year 9999 -14:00": tap(station_time=LATE),
    "tap station_time year 9999": tap(station_time=YEAR_9999),
    # claims
    "claim memo NUL": claim(memo="cof\x00fee"),
    "claim issuer_host NUL": claim(issuer_host="pay\x00"),
    "claim reason NUL": claim(state="refused", reason="no\x00"),
    "claim tap_key NUL": claim(tap_key=f"{UID}:1\x00"),
    "claim bolt11 control": claim(bolt11="lnbc\x07"),
    "claim station_time year 1": claim(station_time=EARLY),
    # payouts from a station
    "payout tap_id 2^63": payout(tap_idempotency_key=None, tap_id=BIG_ID),
    "payout amount_msat 2^63": payout(amount_msat=BIG_ID),
    "payout proof NUL": payout(proof={"note": "a\x00b"}),
    "payout proof key NUL": payout(proof={"a\x00": 1}),
    "payout proof number 2^64": payout(proof={"n": 2**64}),
    "payout lnurl_k1 NUL": payout(lnurl_k1="\x00"),
    "payout idempotency_key NUL": payout(idempotency_key="k\x00"),
    "payout issuer_reason NUL": payout(issuer_reason="x\x00"),
    "station PATCH issuer_reason NUL": station_patch(issuer_reason="x\x00"),
    "station PATCH issuer_payout_id NUL": station_patch(issuer_payout_id="\x00"),
    # operator writes
    "PATCH card alias NUL": operator_patch(f"/api/v1/cards/{UID}", alias="Till\x00"),
    "PATCH card alias newline": operator_patch(f"/api/v1/cards/{UID}", alias="a\nb"),
    "PATCH card notes NUL": operator_patch(f"/api/v1/cards/{UID}", notes="x\x00y"),
    "PATCH payout reason NUL": operator_patch("/api/v1/payouts/{pid}", issuer_reason="\x00"),
    "PATCH payout id 2^63": operator_patch(f"/api/v1/payouts/{BIG_ID}", state="Completed"),
    # operator reads
    "since year 1 +14:00": api_get("/api/v1/payouts", since=EARLY),
    "until year 9999 -14:00": api_get("/api/v1/taps", until=LATE),
    "since year 9999": api_get("/api/v1/taps/export.csv", since=YEAR_9999),
    "min_sats 2^62": api_get("/api/v1/payouts", min_sats=HUGE),
    "max_sats 2^62": api_get("/api/v1/payouts/export.json", max_sats=HUGE),
    "cards page 2^62": api_get("/api/v1/cards", page=HUGE),
    "payout id 2^63": api_get(f"/api/v1/payouts/{BIG_ID}"),
    "cursor 30-digit id": api_get("/api/v1/taps", cursor=CURSOR_30),
    "payouts cursor 30-digit id": api_get("/api/v1/payouts", cursor=CURSOR_30),
    "q NUL": api_get("/api/v1/taps", q="a\x00"),
    "station NUL": api_get("/api/v1/payouts", station="till\x00"),
    "cards q NUL": api_get("/api/v1/cards", q="\x00"),
    "claim id NUL": api_get("/api/v1/claims/ab%00cd"),
}

PAGE_CASES: dict[str, Send] = {
    "payouts since year 1 +14:00": page_get("/payouts", since=EARLY),
    "taps until year 9999 -14:00": page_get("/taps", until=LATE),
    "payouts min_sats 2^62": page_get("/payouts", min_sats=HUGE),
    "payouts max_sats 2^62": page_get("/payouts", max_sats=HUGE),
    "cards page 2^62": page_get("/cards", page=HUGE),
    "payout page id 2^63": page_get(f"/payouts/{BIG_ID}"),
    "taps cursor 30-digit id": page_get("/taps", cursor=CURSOR_30),
    "payouts cursor 30-digit id": page_get("/payouts", cursor=CURSOR_30),
    "taps q NUL": page_get("/taps", q="\x00"),
    "cards q NUL": page_get("/cards", q="x\x00"),
    "taps station NUL": page_get("/taps", station="\x00"),
    "card page uid NUL": page_get("/cards/04A1%00"),
    "rename card alias NUL": lambda w: w.admin.client.post(
        f"/cards/{UID}/alias",
        data={"alias": "Till\x00", "csrf_token": w.admin.csrf},
        headers=HTML,
    ),
    "login username NUL": lambda w: TestClient(w.admin.client.app).post(
        "/login", data={"username": "ad\x00min", "password": "x" * 10}, headers=HTML
    ),
}


@pytest.fixture
def world(client: TestClient, station: StationCredentials, admin_client: OperatorClient) -> World:
    tapped = client.post("/api/v1/taps", json=make_tap(UID, 1), headers=station.headers)
    assert tapped.status_code == 201, tapped.text
    made = client.post("/api/v1/payouts", json=_payout(), headers=station.headers)
    assert made.status_code == 201, made.text
    return World(client, station.headers, admin_client, int(made.json()["payout"]["id"]))


@pytest.mark.parametrize("case", list(API_CASES))
def test_the_api_answers_422_for_input_it_can_never_store(
    world: World, engine: Engine, case: str
) -> None:
    taps, payouts = count_rows(engine, "tap"), count_rows(engine, "payout")
    answer = API_CASES[case](world)
    assert answer.status_code == 422, (case, answer.status_code, answer.text[:300])
    assert isinstance(answer.json()["detail"], list)
    assert (count_rows(engine, "tap"), count_rows(engine, "payout")) == (taps, payouts)
    # The keep-alive connection and the database are fine: the next request works.
    assert world.admin.client.get("/api/v1/stats").status_code == 200


@pytest.mark.parametrize("case", list(PAGE_CASES))
def test_the_pages_answer_a_readable_400(world: World, case: str) -> None:
    answer = PAGE_CASES[case](world)
    assert answer.status_code == 400, (case, answer.status_code, answer.text[:300])
    assert answer.headers["content-type"].startswith("text/html")
    assert "<html" in answer.text and "Traceback" not in answer.text


def test_text_with_line_breaks_is_still_fine_where_people_write_prose(
    world: World, engine: Engine
) -> None:
    notes = world.admin.client.patch(
        f"/api/v1/cards/{UID}",
        json={"notes": "line 1\nline 2\ttab"},
        headers=world.admin.write_headers,
    )
    assert notes.status_code == 200, notes.text
    refused = make_tap(UID, 9, outcome="refused", reason="issuer said:\r\nno")
    stored = world.station.post("/api/v1/taps", json=refused, headers=world.headers)
    assert stored.status_code == 201, stored.text
    # A station whose clock was reset to the epoch still gets its taps stored.
    epoch = make_tap(UID, 2) | {"station_time": "1970-01-01T00:00:00+00:00"}
    stored = world.station.post("/api/v1/taps", json=epoch, headers=world.headers)
    assert stored.status_code == 201, stored.text
