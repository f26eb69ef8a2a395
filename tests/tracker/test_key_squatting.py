"""Idempotency keys belong to the tap they name (issue 11, item 4), SQLite and PostgreSQL.

An accepted tap's key is exactly ``<UID>:<counter>`` of its body, so one station cannot
take the key of another card's tap; refused (and unverified) taps may not use that form at
all, so a refused tap can never block the accepted tap whose key it copied.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tracker_testlib import StationCredentials, count_rows, make_station, make_tap

X = "04A1B2C3D4E5F6"
Y = "04B0B0B0B0B0B0"
Z = "04C0C0C0C0C0C0"


def _post(client: TestClient, who: StationCredentials, body: dict[str, object]) -> Any:
    return client.post("/api/v1/taps", json=body, headers=who.headers)


def test_an_accepted_tap_cannot_take_the_key_of_another_cards_tap(
    client: TestClient, station: StationCredentials, engine: Engine
) -> None:
    other = make_station(engine, "till-2")
    squat = _post(client, station, make_tap(X, 10, key=f"{Y}:7"))
    assert squat.status_code == 422, squat.text
    genuine = _post(client, other, make_tap(Y, 7))
    assert genuine.status_code == 201, genuine.text
    assert genuine.json()["tap"]["card_uid"] == Y
    assert genuine.json()["tap"]["station"] == "till-2"
    assert count_rows(engine, "tap") == 1


def test_a_refused_tap_with_an_accepted_taps_key_never_blocks_it(
    client: TestClient, station: StationCredentials, engine: Engine
) -> None:
    other = make_station(engine, "till-2")
    for outcome, verified in (("refused", True), ("accepted", False)):
        squat = make_tap(X, 5, outcome=outcome, key=f"{Z}:5") | {"verified": verified}
        answer = _post(client, other, squat)
        assert answer.status_code == 422, answer.text
    genuine = _post(client, station, make_tap(Z, 5))
    assert genuine.status_code == 201, genuine.text
    assert count_rows(engine, "tap") == 1


def test_the_key_is_matched_without_regard_to_case_and_retries_still_work(
    client: TestClient, station: StationCredentials, engine: Engine
) -> None:
    first = _post(client, station, make_tap(X.lower(), 3, key=f"{X.lower()}:3"))
    assert first.status_code == 201, first.text
    assert first.json()["tap"]["idempotency_key"] == f"{X}:3"
    retry = _post(client, station, make_tap(X, 3))
    assert retry.status_code == 200
    wrong_counter = _post(client, station, make_tap(X, 4, key=f"{X}:04"))
    assert wrong_counter.status_code == 422
    # A refused tap keeps its "<station>:<uuid4>" key; another station reusing it is refused.
    refused = make_tap(X, 0, outcome="refused", key="till-1:6b1f0b4e-2c1a-4f59-9d0e-3a1c")
    assert _post(client, station, refused).status_code == 201
    other = make_station(engine, "till-2")
    assert _post(client, other, refused).status_code == 409
    assert _post(client, station, refused).status_code == 200
    assert count_rows(engine, "tap") == 2
