"""``POST /api/v1/taps/batch``: in order, one answer per report, the single route's codes,
exactly once, behind the same token and body limit (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tracker_testlib import count_rows, make_tap

UID = "04A1B2C3D4E5F6"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def reports() -> list[dict[str, Any]]:
    return [
        make_tap(UID, 1),
        make_tap(UID, 2),
        make_tap(UID, 2),  # a retry of the same report: already stored
        make_tap(UID, 5),
        make_tap(UID, 3),  # below 5: a replay
        make_tap(UID, 0, outcome="refused", reason="host_not_allowed", issuer_host="a\x00b"),
        make_tap(UID, 0, outcome="refused", reason="host_not_allowed"),
        {"not": "a tap"},
        "not even an object",
    ]


def test_each_report_gets_the_single_routes_answer_in_order(
    client: TestClient, engine: Engine, station_token: str
) -> None:
    resp = client.post("/api/v1/taps/batch", json={"taps": reports()}, headers=auth(station_token))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["complete"] is True
    codes = [r["status"] for r in body["results"]]
    assert codes == [201, 201, 200, 201, 409, 422, 201, 422, 422]
    assert body["results"][4]["detail"] == {"reason": "counter_not_increasing", "last_counter": 5}
    assert body["results"][5]["detail"][0]["field"] == "issuer_host"
    assert "\x00" not in resp.text
    assert count_rows(engine, "tap") == 4
    # the same reports one by one get the same codes (a second station, a second card)
    singles = []
    for report in reports():
        if isinstance(report, dict) and "card_uid" in report:
            report = {**report, "card_uid": "04000000000001",
                      "idempotency_key": report["idempotency_key"].replace(UID, "04000000000001")}
        singles.append(client.post("/api/v1/taps", json=report,
                                   headers=auth(station_token)).status_code)
    assert singles == codes
    again = client.post("/api/v1/taps/batch", json={"taps": reports()[:5]},
                        headers=auth(station_token))
    assert [r["status"] for r in again.json()["results"]] == [200, 200, 200, 200, 409]
    assert count_rows(engine, "tap") == 8  # nothing stored twice


def test_batch_limits_token_and_body_size(
    client: TestClient, engine: Engine, station_token: str
) -> None:
    taps = [make_tap(UID, n) for n in range(1, 502)]
    assert client.post("/api/v1/taps/batch", json={"taps": taps},
                       headers=auth(station_token)).status_code == 422
    assert client.post("/api/v1/taps/batch", json={"taps": []},
                       headers=auth(station_token)).status_code == 422
    assert client.post("/api/v1/taps/batch", json={"taps": taps[:3]},
                       headers=auth("wrong")).status_code == 401
    big = [{**make_tap(UID, n), "reason": "x" * 400} for n in range(1, 500)] * 6
    resp = client.post("/api/v1/taps/batch", json={"taps": big[:500]},
                       headers={**auth(station_token)})
    assert resp.status_code == 200  # 500 reports of ~600 bytes fit
    huge = {"taps": [{"pad": "y" * 1_100_000}]}
    assert client.post("/api/v1/taps/batch", json=huge,
                       headers=auth(station_token)).status_code == 413
    assert count_rows(engine, "tap") == 499
