"""Claims from stations (``POST /api/v1/claims``) and unverified taps, on SQLite and
PostgreSQL: stored once, moved on by later states but never out of a final one, refused
(422) for a tap that is not this station's accepted tap, and shown as a payout."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tracker_testlib import OperatorClient, StationCredentials, count_rows, make_station, make_tap

UID = "04A1B2C3D4E5F6"
HTML = {"accept": "text/html"}


def _claim(tap_key: str, state: str = "claimed", **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "claim_id": secrets.token_hex(16),
        "tap_key": tap_key,
        "state": state,
        "amount_msat": 21_000,
        "memo": "coffee",
        "bolt11": "lnbc210n1demo",
        "payment_hash": "ab" * 32,
        "issuer_host": "pay.example.com",
        "k1_hash": hashlib.sha256(b"k1-secret").hexdigest(),
        "reason": None,
        "station_time": datetime.now(UTC).isoformat(),
    }
    body.update(kw)
    return body


def _tap(client: TestClient, station: StationCredentials, counter: int = 1, **kw: Any) -> str:
    body = make_tap(UID, counter, **kw)
    answer = client.post("/api/v1/taps", json=body, headers=station.headers)
    assert answer.status_code == 201, answer.text
    return str(body["idempotency_key"])


def _post(client: TestClient, station: StationCredentials, body: dict[str, Any]) -> Any:
    return client.post("/api/v1/claims", json=body, headers=station.headers)


def _payout(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        import sqlalchemy as sa

        row = conn.execute(sa.text("SELECT * FROM payout")).mappings().one()
    return dict(row)


def test_a_claim_is_stored_once_and_shows_up_as_a_payout(
    client: TestClient, station: StationCredentials, engine: Engine
) -> None:
    body = _claim(_tap(client, station))
    first = _post(client, station, body)
    assert first.status_code == 201, first.text
    assert first.json()["created"] is True
    assert first.json()["claim"]["state"] == "claimed"
    assert "k1_hash" not in first.json()["claim"]
    again = _post(client, station, body)
    assert again.status_code == 200
    assert again.json()["created"] is False
    assert count_rows(engine, "claim") == 1
    assert count_rows(engine, "claim_state_change") == 1
    payout = _payout(engine)
    assert (payout["state"], payout["amount_msat"], payout["issuer_host"]) == (
        "AwaitingPayment",
        21_000,
        "pay.example.com",
    )
    assert payout["payment_hash"] == "ab" * 32
    with engine.connect() as conn:
        import sqlalchemy as sa

        stored = conn.execute(sa.text("SELECT k1_hash FROM claim")).scalar_one()
    assert stored == hashlib.sha256(b"k1-secret").hexdigest()


def test_a_later_state_updates_the_claim_and_its_payout(
    client: TestClient, station: StationCredentials, engine: Engine, viewer_client: OperatorClient
) -> None:
    body = _claim(_tap(client, station), state="unknown")
    assert _post(client, station, body).status_code == 201
    assert _payout(engine)["state"] == "Unknown"
    paid = _post(client, station, {**body, "state": "paid"})
    assert paid.status_code == 200
    assert paid.json()["claim"]["state"] == "paid"
    assert _payout(engine)["state"] == "Completed"
    assert count_rows(engine, "claim_state_change") == 2
    assert count_rows(engine, "payout_state_change") == 2
    read = viewer_client.client.get(f"/api/v1/claims/{body['claim_id']}")
    assert read.status_code == 200
    assert [(h["from_state"], h["to_state"], h["source"]) for h in read.json()["history"]] == [
        (None, "unknown", "station"),
        ("unknown", "paid", "station"),
    ]


def test_a_final_state_never_goes_back(
    client: TestClient, station: StationCredentials, engine: Engine
) -> None:
    body = _claim(_tap(client, station), state="refused", reason="card limit reached")
    assert _post(client, station, body).status_code == 201
    late = _post(client, station, {**body, "state": "sending"})  # an outbox replay, late
    assert late.status_code == 200
    assert late.json()["claim"]["state"] == "refused"
    payout = _payout(engine)
    assert (payout["state"], payout["issuer_reason"]) == ("Failed", "card limit reached")
    assert count_rows(engine, "claim_state_change") == 1


def test_a_claim_needs_an_accepted_tap_of_the_same_station(
    client: TestClient, station: StationCredentials, engine: Engine
) -> None:
    other = make_station(engine, "till-2")
    own_key = _tap(client, station, 1)
    refused_key = _tap(client, station, 2, outcome="refused", reason="bad mac")
    for who, key in ((other, own_key), (station, refused_key), (station, "no-such-tap")):
        answer = _post(client, who, _claim(key))
        assert answer.status_code == 422, (who.name, key, answer.text)
        assert answer.json()["detail"][0]["field"] == "tap_key"
    assert count_rows(engine, "claim") == 0
    assert count_rows(engine, "payout") == 0


def test_a_bad_token_or_body_is_refused(
    client: TestClient, station: StationCredentials, engine: Engine
) -> None:
    body = _claim(_tap(client, station))
    bad = client.post("/api/v1/claims", json=body, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    assert client.post("/api/v1/claims", json=body).status_code == 401
    for broken in ({"amount_msat": 0}, {"claim_id": "x" * 32}, {"payment_hash": "zz"}):
        assert _post(client, station, {**body, **broken}).status_code == 422, broken
    assert count_rows(engine, "claim") == 0


def test_an_unverified_tap_skips_the_counter_compare_and_set(
    client: TestClient, station: StationCredentials, engine: Engine, viewer_client: OperatorClient
) -> None:
    _tap(client, station, 10)
    foreign = make_tap(UID, 0, key=f"{station.name}:{secrets.token_hex(16)}")
    foreign["verified"] = False
    answer = client.post("/api/v1/taps", json=foreign, headers=station.headers)
    assert answer.status_code == 201, answer.text  # counter 0 < 10, yet no 409
    assert answer.json()["tap"]["verified"] is False
    with engine.connect() as conn:
        import sqlalchemy as sa

        last = conn.execute(
            sa.text("SELECT last_counter FROM card WHERE uid = :u"), {"u": UID}
        ).scalar_one()
    assert last == 10
    assert _tap(client, station, 11)  # the card's own counter still moves on
    card = viewer_client.client.get(f"/api/v1/cards/{UID}").json()
    assert card["last_counter"] == 11 and card["counter_gaps"] == []
    listed = viewer_client.client.get("/api/v1/taps").json()["items"]
    assert [t["verified"] for t in listed] == [True, False, True]
    page = viewer_client.client.get("/taps", headers=HTML).text
    assert page.count('data-verified="false"') == 1
    # a claim may follow an unverified (accepted) tap
    assert _post(client, station, _claim(str(foreign["idempotency_key"]))).status_code == 201


def test_claims_appear_on_the_dashboard_and_the_payout_page(
    client: TestClient, station: StationCredentials, viewer_client: OperatorClient
) -> None:
    body = _claim(_tap(client, station), memo="two flat whites", amount_msat=42_000)
    claim = _post(client, station, body).json()["claim"]
    dashboard = viewer_client.client.get("/", headers=HTML).text
    assert f'href="/payouts/{claim["payout_id"]}"' in dashboard
    detail = viewer_client.client.get(f"/payouts/{claim['payout_id']}", headers=HTML).text
    assert "two flat whites" in detail and "pay.example.com" in detail
    assert "42 sats" in detail
    assert hashlib.sha256(b"k1-secret").hexdigest() not in detail
