"""Operator reads, admin edits, payouts and their history, auth boundaries, no secrets out."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tracker_testlib import (
    Operator,
    OperatorClient,
    StationCredentials,
    count_rows,
    make_station,
    make_tap,
)

UID = "04A1B2C3D4E5F6"
UID2 = "04112233445566"
PHASH = hashlib.sha256(b"preimage-1").hexdigest()


def _post_tap(client: TestClient, station: StationCredentials, uid: str, counter: int) -> Any:
    answer = client.post("/api/v1/taps", json=make_tap(uid, counter), headers=station.headers)
    assert answer.status_code == 201, answer.text
    return answer.json()["tap"]


def _post_payout(client: TestClient, station: StationCredentials, **body: Any) -> Any:
    answer = client.post("/api/v1/payouts", json=body, headers=station.headers)
    assert answer.status_code in (200, 201), answer.text
    return answer


# --------------------------------------------------------------------------------------------
# Card status (station or operator)


def test_card_status_for_station_and_operator(
    client: TestClient, station: StationCredentials, viewer_client: OperatorClient
) -> None:
    unknown = client.get(f"/api/v1/cards/{UID}/status", headers=station.headers)
    assert unknown.json() == {"uid": UID, "status": "unknown", "last_counter": None}
    _post_tap(client, station, UID, 12)
    known = client.get(f"/api/v1/cards/{UID.lower()}/status", headers=station.headers)
    assert known.json() == {"uid": UID, "status": "active", "last_counter": 12}
    by_operator = viewer_client.client.get(f"/api/v1/cards/{UID}/status")
    assert by_operator.json()["status"] == "active"
    assert client.get(f"/api/v1/cards/{UID}/status").status_code == 401


# --------------------------------------------------------------------------------------------
# Payouts


def test_payout_linked_by_tap_key_with_state_history(
    client: TestClient, station: StationCredentials, admin_client: OperatorClient
) -> None:
    tap = _post_tap(client, station, UID, 1)
    created = _post_payout(
        client,
        station,
        tap_idempotency_key=tap["idempotency_key"],
        amount_msat=2_100_000,
        bolt11="lnbc21u1pexample",
        payment_hash=PHASH.upper(),
        issuer_host="pay.example.com",
        lnurl_k1="4E2E-E19C",
        state="AwaitingPayment",
    )
    assert created.status_code == 201
    payout = created.json()["payout"]
    assert payout["card_uid"] == UID
    assert payout["station"] == "till-1"
    assert payout["tap_id"] == tap["id"]
    assert payout["payment_hash"] == PHASH  # normalised to lowercase hex
    pid = payout["id"]

    patched = client.patch(
        f"/api/v1/payouts/{pid}",
        json={"state": "Completed", "proof": {"PaymentHash": PHASH, "Preimage": "00" * 32}},
        headers=station.headers,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["state"] == "Completed"

    detail = admin_client.client.get(f"/api/v1/payouts/{pid}").json()
    assert [(h["from_state"], h["to_state"]) for h in detail["history"]] == [
        (None, "AwaitingPayment"),
        ("AwaitingPayment", "Completed"),
    ]
    assert detail["history"][1]["source"] == "station"
    assert detail["tap"]["counter"] == 1
    assert detail["proof_payment_hash"] == PHASH
    assert detail["proof_present"] is True
    assert "00" * 32 not in str(detail)  # the preimage never leaves the tracker

    # Same state again: no new history row.
    client.patch(f"/api/v1/payouts/{pid}", json={"state": "Completed"}, headers=station.headers)
    detail = admin_client.client.get(f"/api/v1/payouts/{pid}").json()
    assert len(detail["history"]) == 2


def test_payout_retry_with_idempotency_key_is_not_duplicated(
    client: TestClient, station: StationCredentials, engine: Engine
) -> None:
    tap = _post_tap(client, station, UID, 1)
    body = {"tap_id": tap["id"], "amount_msat": 1000, "idempotency_key": "claim-1"}
    first = _post_payout(client, station, **body)
    again = _post_payout(client, station, **body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["payout"]["id"] == first.json()["payout"]["id"]
    assert count_rows(engine, "payout") == 1


def test_payout_for_unknown_tap_is_404_and_other_station_cannot_patch(
    client: TestClient, station: StationCredentials, engine: Engine
) -> None:
    missing = client.post(
        "/api/v1/payouts",
        json={"tap_idempotency_key": "nope", "amount_msat": 1000},
        headers=station.headers,
    )
    assert missing.status_code == 404
    assert missing.json()["detail"]["reason"] == "tap_not_found"
    tap = _post_tap(client, station, UID, 1)
    pid = _post_payout(client, station, tap_id=tap["id"], amount_msat=5000).json()["payout"]["id"]
    other = make_station(engine, "till-2")
    answer = client.patch(f"/api/v1/payouts/{pid}", json={"state": "Failed"}, headers=other.headers)
    assert answer.status_code == 404
    assert count_rows(engine, "payout_state_change", "to_state = 'Failed'") == 0


def test_invalid_payout_state_is_422(client: TestClient, station: StationCredentials) -> None:
    answer = client.post(
        "/api/v1/payouts", json={"amount_msat": 1, "state": "Paid"}, headers=station.headers
    )
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["field"] == "state"


# --------------------------------------------------------------------------------------------
# Cards: list, detail, admin edits


def test_cards_list_search_and_detail(
    client: TestClient, station: StationCredentials, viewer_client: OperatorClient
) -> None:
    for counter in (1, 2, 5):  # 3 and 4 never seen: a gap
        _post_tap(client, station, UID, counter)
    _post_tap(client, station, UID2, 1)
    refused = make_tap(UID, 9, outcome="refused", reason="bad CMAC")
    client.post("/api/v1/taps", json=refused, headers=station.headers)

    viewer = viewer_client.client
    listing = viewer.get("/api/v1/cards").json()
    assert listing["total"] == 2
    assert {c["uid"] for c in listing["items"]} == {UID, UID2}
    found = viewer.get("/api/v1/cards", params={"q": "112233"}).json()
    assert [c["uid"] for c in found["items"]] == [UID2]

    detail = viewer.get(f"/api/v1/cards/{UID}").json()
    assert detail["tap_count"] == 4
    assert detail["refused_count"] == 1
    assert detail["last_counter"] == 5
    assert detail["stations"] == ["till-1"]
    assert detail["counter_gaps"] == [[3, 4]]
    assert viewer.get("/api/v1/cards/04FFFFFFFFFFFF").status_code == 404

    taps = viewer.get(f"/api/v1/cards/{UID}/taps").json()["items"]
    assert [t["counter"] for t in taps] == [9, 5, 2, 1]


def test_admin_renames_notes_and_blocks_card(
    client: TestClient,
    station: StationCredentials,
    admin_client: OperatorClient,
    viewer_client: OperatorClient,
) -> None:
    _post_tap(client, station, UID, 1)
    admin = admin_client.client
    # Blocking without saying why is refused, and changes nothing.
    for reason in ({}, {"reason": "   "}):
        no_reason = admin.patch(
            f"/api/v1/cards/{UID}",
            json={"alias": "Alice's card", "status": "blocked", **reason},
            headers=admin_client.write_headers,
        )
        assert no_reason.status_code == 422, no_reason.text
        assert "reason" in no_reason.text
    assert admin.get(f"/api/v1/cards/{UID}").json()["alias"] is None
    answer = admin.patch(
        f"/api/v1/cards/{UID}",
        json={"alias": "Alice's card", "notes": "<b>VIP</b>", "status": "blocked",
              "reason": "reported lost"},
        headers=admin_client.write_headers,
    )
    assert answer.status_code == 200, answer.text
    card = answer.json()
    assert (card["alias"], card["notes"], card["status"]) == (
        "Alice's card",
        "<b>VIP</b>",
        "blocked",
    )
    assert (card["blocked_by"], card["blocked_reason"]) == ("admin", "reported lost")
    blocked_at = datetime.fromisoformat(card["blocked_at"])
    assert abs((datetime.now(UTC) - blocked_at).total_seconds()) < 60
    blocked = client.post("/api/v1/taps", json=make_tap(UID, 2), headers=station.headers)
    assert blocked.status_code == 403
    # Unblock (with a reason): taps flow again, and the block record is cleared.
    unblocked = admin.patch(
        f"/api/v1/cards/{UID}", json={"status": "active", "reason": "found"},
        headers=admin_client.write_headers,
    )
    assert unblocked.json()["blocked_by"] is None
    again = client.post("/api/v1/taps", json=make_tap(UID, 2), headers=station.headers)
    assert again.status_code == 201
    # Wiping is not an operator action.
    wipe = admin.patch(
        f"/api/v1/cards/{UID}", json={"status": "wiped"}, headers=admin_client.write_headers
    )
    assert wipe.status_code == 422
    # Without the CSRF header, or as a viewer: refused.
    no_csrf = admin.patch(f"/api/v1/cards/{UID}", json={"alias": "x"})
    assert no_csrf.status_code == 403
    as_viewer = viewer_client.client.patch(
        f"/api/v1/cards/{UID}", json={"alias": "x"}, headers=viewer_client.write_headers
    )
    assert as_viewer.status_code == 403
    assert admin.get(f"/api/v1/cards/{UID}").json()["alias"] == "Alice's card"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/stats",
        "/api/v1/cards",
        f"/api/v1/cards/{UID}",
        "/api/v1/payouts",
        "/api/v1/taps",
        "/api/v1/stations",
        "/api/v1/taps/export.csv",
        "/api/v1/payouts/export.json",
        "/api/v1/audit",
        "/api/v1/audit/export.csv",
    ],
)
def test_operator_reads_need_a_session(
    client: TestClient, station: StationCredentials, path: str
) -> None:
    assert client.get(path).status_code == 401
    # A station token is not an operator login.
    assert client.get(path, headers=station.headers).status_code == 401


# --------------------------------------------------------------------------------------------
# Stats


def test_stats_count_states_amounts_and_periods(
    client: TestClient, station: StationCredentials, engine: Engine, viewer_client: OperatorClient
) -> None:
    states = ["Completed", "Completed", "AwaitingApproval", "InProgress", "Cancelled", "Failed"]
    for counter, state in enumerate(states, start=1):
        tap = _post_tap(client, station, UID, counter)
        _post_payout(client, station, tap_id=tap["id"], amount_msat=1_000_000 + 1, state=state)
    # Move one tap and one payout to last year: outside "today" and outside a recent period.
    with engine.begin() as conn:
        old = datetime(2025, 1, 1, tzinfo=UTC)
        conn.execute(sa.text("UPDATE tap SET received_at = :t WHERE counter = 1"), {"t": old})
        conn.execute(sa.text("UPDATE payout SET created = :t WHERE id = 1"), {"t": old})
    viewer = viewer_client.client
    everything = viewer.get("/api/v1/stats").json()
    assert everything["total_payouts"] == 6
    assert everything["pending_payouts"] == 2
    assert everything["completed_payouts"] == 2
    assert everything["failed_payouts"] == 2
    assert everything["total_amount_sats"] == 6 * 1000  # msat floored to sats
    assert everything["active_cards"] == 1
    assert everything["taps_today"] == 5
    assert everything["taps_in_period"] == 6

    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    recent = viewer.get("/api/v1/stats", params={"since": since}).json()
    assert recent["total_payouts"] == 5
    assert recent["completed_payouts"] == 1
    assert recent["taps_in_period"] == 5


# --------------------------------------------------------------------------------------------
# Secrets never leave


def test_no_secret_in_any_answer(
    client: TestClient,
    station: StationCredentials,
    admin_client: OperatorClient,
    admin_user: Operator,
    engine: Engine,
) -> None:
    tap = _post_tap(client, station, UID, 1)
    _post_payout(client, station, tap_id=tap["id"], amount_msat=1000)
    with engine.connect() as conn:
        token_hash = conn.execute(sa.text("SELECT token_hash FROM station")).scalar_one()
        password_hash = conn.execute(sa.text("SELECT password_hash FROM user_account")).scalar_one()
    admin = admin_client.client
    bodies = [
        admin.get(path).text
        for path in (
            "/api/v1/stations",
            "/api/v1/stats",
            "/api/v1/cards",
            f"/api/v1/cards/{UID}",
            "/api/v1/taps",
            "/api/v1/payouts",
            "/api/v1/payouts/1",
            "/api/v1/taps/export.json",
            "/api/v1/payouts/export.csv",
            "/api/openapi.json",
        )
    ]
    bodies.append(client.get(f"/api/v1/cards/{UID}/status", headers=station.headers).text)
    for body in bodies:
        for secret in (station.token, token_hash, admin_user.password, password_hash):
            assert secret not in body
    stations = admin.get("/api/v1/stations").json()
    assert stations[0]["has_token"] is True
    assert "token_hash" not in stations[0]
