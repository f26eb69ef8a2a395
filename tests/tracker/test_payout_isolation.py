"""Records belong to whoever made them (issue 11, item 5), SQLite and PostgreSQL.

A station may only attach payouts and claims to its own accepted taps: station s2 posting a
payout on s1's tap used to be stored and credited to s1. And only operators write operator
history: a station sending ``source: "operator"`` is refused.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tracker_testlib import OperatorClient, StationCredentials, count_rows, make_station, make_tap

UID = "04A1B2C3D4E5F6"


def _tap(client: TestClient, who: StationCredentials, counter: int, **kw: Any) -> dict[str, Any]:
    answer = client.post("/api/v1/taps", json=make_tap(UID, counter, **kw), headers=who.headers)
    assert answer.status_code == 201, answer.text
    return dict(answer.json()["tap"])


def test_a_station_cannot_attach_a_payout_to_another_stations_or_a_refused_tap(
    client: TestClient, station: StationCredentials, engine: Engine
) -> None:
    other = make_station(engine, "till-2")
    tap = _tap(client, station, 1)
    refused = _tap(client, other, 0, outcome="refused")
    attempts = [
        (other, {"tap_id": tap["id"]}),
        (other, {"tap_idempotency_key": tap["idempotency_key"]}),
        (station, {"tap_id": refused["id"]}),
        (other, {"tap_idempotency_key": refused["idempotency_key"]}),
    ]
    for who, link in attempts:
        answer = client.post(
            "/api/v1/payouts", json={"amount_msat": 1000, **link}, headers=who.headers
        )
        assert answer.status_code == 422, (link, answer.text)
    assert count_rows(engine, "payout") == 0
    # Its own accepted tap is fine.
    own = client.post(
        "/api/v1/payouts", json={"amount_msat": 1000, "tap_id": tap["id"]}, headers=station.headers
    )
    assert own.status_code == 201, own.text
    assert own.json()["payout"]["station"] == "till-1"


def test_a_station_cannot_claim_on_another_stations_tap(
    client: TestClient, station: StationCredentials, engine: Engine
) -> None:
    other = make_station(engine, "till-2")
    tap = _tap(client, station, 1)
    claim = {
        "claim_id": secrets.token_hex(16),
        "tap_key": tap["idempotency_key"],
        "state": "claimed",
        "amount_msat": 1000,
        "issuer_host": "pay.example.com",
        "station_time": datetime.now(UTC).isoformat(),
    }
    answer = client.post("/api/v1/claims", json=claim, headers=other.headers)
    assert answer.status_code == 422, answer.text
    assert count_rows(engine, "claim") == 0


def test_only_operators_write_operator_history(
    client: TestClient, station: StationCredentials, admin_client: OperatorClient, engine: Engine
) -> None:
    tap = _tap(client, station, 1)
    made = client.post(
        "/api/v1/payouts", json={"amount_msat": 1000, "tap_id": tap["id"]}, headers=station.headers
    )
    pid = made.json()["payout"]["id"]
    for source in ("operator", "webhook", "api"):
        forged = client.patch(
            f"/api/v1/payouts/{pid}",
            json={"state": "Completed", "source": source},
            headers=station.headers,
        )
        assert forged.status_code == 422, (source, forged.text)
    assert count_rows(engine, "payout_state_change", "source <> 'station'") == 0
    honest = client.patch(
        f"/api/v1/payouts/{pid}", json={"state": "Completed"}, headers=station.headers
    )
    assert honest.status_code == 200, honest.text
    by_admin = admin_client.client.patch(
        f"/api/v1/payouts/{pid}", json={"state": "Cancelled"}, headers=admin_client.write_headers
    )
    assert by_admin.status_code == 200, by_admin.text
    history = admin_client.client.get(f"/api/v1/payouts/{pid}").json()["history"]
    assert [h["source"] for h in history] == ["station", "station", "operator"]
