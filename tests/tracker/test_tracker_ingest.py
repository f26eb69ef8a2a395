"""The ingest contract stations code against: POST /api/v1/taps and record_tap()."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tracker_testlib import StationCredentials, count_rows, make_station, make_tap

from tracker.db import make_sessionmaker
from tracker.models import TapCreate
from tracker.services import taps as tap_service

UID = "04A1B2C3D4E5F6"


def _last_counter(engine: Engine, uid: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT last_counter FROM card WHERE uid = :uid"), {"uid": uid}
        ).scalar()


def _block(engine: Engine, uid: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE card SET status = 'blocked' WHERE uid = :uid"), {"uid": uid})


def test_first_tap_is_stored_and_creates_the_card(
    client: TestClient, station: StationCredentials, engine: Engine
) -> None:
    body = make_tap("04a1b2c3d4e5f6", 7, card_id="deadbeef")
    answer = client.post("/api/v1/taps", json=body, headers=station.headers)
    assert answer.status_code == 201, answer.text
    data = answer.json()
    assert data["created"] is True
    tap = data["tap"]
    assert tap["card_uid"] == UID  # stored uppercase
    assert tap["counter"] == 7
    assert tap["station"] == "till-1"
    assert tap["outcome"] == "accepted"
    assert tap["idempotency_key"] == body["idempotency_key"]
    assert count_rows(engine, "tap") == 1
    assert count_rows(engine, "card", "uid = :u AND status = 'active'", u=UID) == 1
    assert _last_counter(engine, UID) == 7


def test_station_time_keeps_its_instant(client: TestClient, station: StationCredentials) -> None:
    when = datetime(2026, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    answer = client.post("/api/v1/taps", json=make_tap(when=when), headers=station.headers)
    stored = datetime.fromisoformat(answer.json()["tap"]["station_time"])
    assert stored == when  # same instant, whatever offset it is rendered in


def test_retry_with_same_key_returns_stored_record_and_changes_nothing(
    client: TestClient, station: StationCredentials, engine: Engine
) -> None:
    body = make_tap(UID, 5)
    first = client.post("/api/v1/taps", json=body, headers=station.headers)
    retry = client.post("/api/v1/taps", json={**body, "reason": "changed"}, headers=station.headers)
    assert retry.status_code == 200
    assert retry.json()["created"] is False
    assert retry.json()["tap"] == first.json()["tap"]
    assert count_rows(engine, "tap") == 1
    assert _last_counter(engine, UID) == 5


def test_replayed_or_lower_counter_is_refused_and_nothing_stored(
    client: TestClient, station: StationCredentials, engine: Engine
) -> None:
    client.post("/api/v1/taps", json=make_tap(UID, 10), headers=station.headers)
    other = make_station(engine, "till-2")
    for who, counter in ((other, 10), (station, 9), (station, 0), (other, 3)):
        answer = client.post("/api/v1/taps", json=make_tap(UID, counter), headers=who.headers)
        assert answer.status_code == 409
        assert answer.json() == {"detail": {"reason": "counter_not_increasing", "last_counter": 10}}
    assert count_rows(engine, "tap") == 1
    assert _last_counter(engine, UID) == 10
    higher = client.post("/api/v1/taps", json=make_tap(UID, 11), headers=station.headers)
    assert higher.status_code == 201


def test_key_of_another_station_is_a_conflict(
    client: TestClient, station: StationCredentials, engine: Engine
) -> None:
    other = make_station(engine, "till-2")
    body = make_tap(UID, 3)
    assert client.post("/api/v1/taps", json=body, headers=station.headers).status_code == 201
    answer = client.post("/api/v1/taps", json=body, headers=other.headers)
    assert answer.status_code == 409
    assert answer.json()["detail"]["reason"] == "counter_not_increasing"
    assert count_rows(engine, "tap") == 1


def test_blocked_card_refuses_accepted_taps_but_records_refused_ones(
    client: TestClient, station: StationCredentials, engine: Engine
) -> None:
    client.post("/api/v1/taps", json=make_tap(UID, 1), headers=station.headers)
    _block(engine, UID)
    answer = client.post("/api/v1/taps", json=make_tap(UID, 2), headers=station.headers)
    assert answer.status_code == 403
    assert answer.json() == {"detail": {"reason": "card_blocked"}}
    assert count_rows(engine, "tap") == 1
    assert _last_counter(engine, UID) == 1
    refused = make_tap(UID, 2, outcome="refused", reason="card blocked")
    answer = client.post("/api/v1/taps", json=refused, headers=station.headers)
    assert answer.status_code == 201
    assert count_rows(engine, "tap") == 2


def test_refused_taps_never_move_the_counter(
    client: TestClient, station: StationCredentials, engine: Engine
) -> None:
    refused = make_tap(UID, 50, outcome="refused", reason="bad CMAC")
    assert client.post("/api/v1/taps", json=refused, headers=station.headers).status_code == 201
    assert _last_counter(engine, UID) is None
    # A lower counter is still accepted: the refused tap proved nothing.
    assert (
        client.post("/api/v1/taps", json=make_tap(UID, 4), headers=station.headers).status_code
        == 201
    )
    assert _last_counter(engine, UID) == 4


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic abc"}],
    ids=["missing", "unknown", "wrong-scheme"],
)
def test_bad_or_missing_token_is_401(
    client: TestClient, station: StationCredentials, engine: Engine, headers: dict[str, str]
) -> None:
    answer = client.post("/api/v1/taps", json=make_tap(), headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert count_rows(engine, "tap") == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"card_uid": "04A1B2"}, "card_uid"),  # 3 bytes
        ({"card_uid": "04A1B2C3D4E5F60708090A0B"}, "card_uid"),  # 12 bytes
        ({"card_uid": "04A1B2C3D4E5F"}, "card_uid"),  # odd length
        ({"card_uid": "ZZA1B2C3D4E5F6"}, "card_uid"),
        ({"counter": -1}, "counter"),
        ({"counter": 16777216}, "counter"),
        ({"station_time": "2026-01-01T10:00:00"}, "station_time"),  # no offset
        ({"outcome": "maybe"}, "outcome"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"idempotency_key": "k" * 201}, "idempotency_key"),
        ({"reason": "r" * 501}, "reason"),
    ],
)
def test_invalid_body_is_422_with_field_reason(
    client: TestClient,
    station: StationCredentials,
    engine: Engine,
    change: dict[str, Any],
    field: str,
) -> None:
    answer = client.post("/api/v1/taps", json={**make_tap(), **change}, headers=station.headers)
    assert answer.status_code == 422
    fields = [err["field"] for err in answer.json()["detail"]]
    assert field in fields
    assert all(err["reason"] for err in answer.json()["detail"])
    assert count_rows(engine, "tap") == 0


def test_counter_bounds_are_accepted(client: TestClient, station: StationCredentials) -> None:
    assert (
        client.post("/api/v1/taps", json=make_tap(UID, 0), headers=station.headers).status_code
        == 201
    )
    top = make_tap(UID, 0xFFFFFF)
    assert client.post("/api/v1/taps", json=top, headers=station.headers).status_code == 201


# --------------------------------------------------------------------------------------------
# record_tap (local stations, no HTTP)


def _tap(counter: int, **kw: Any) -> TapCreate:
    return TapCreate.model_validate(make_tap(UID, counter, **kw))


def test_record_tap_creates_station_by_name_and_raises_typed_errors(engine: Engine) -> None:
    factory = make_sessionmaker(engine)
    with factory() as s:
        tap, created = tap_service.record_tap(s, station_name="local-till", tap=_tap(1))
        assert created and tap.station == "local-till"
        again, created = tap_service.record_tap(s, station_name="local-till", tap=_tap(1))
        assert not created and again == tap
        with pytest.raises(tap_service.CounterConflict) as conflict:
            tap_service.record_tap(s, station_name="other-till", tap=_tap(1))
        assert conflict.value.last_counter == 1
    _block(engine, UID)
    with factory() as s, pytest.raises(tap_service.CardBlocked):
        tap_service.record_tap(s, station_name="local-till", tap=_tap(2))
    assert count_rows(engine, "station", "name = 'local-till' AND token_hash IS NULL") == 1
    assert count_rows(engine, "tap") == 1


# --------------------------------------------------------------------------------------------
# Concurrency: the compare-and-set holds with two writers


def test_two_stations_same_counter_concurrently_exactly_one_wins(engine: Engine) -> None:
    """Two threads, each with its own session, race the same card+counter many times."""
    factory = make_sessionmaker(engine)
    rounds = 15
    outcomes: list[list[str]] = [[] for _ in range(rounds)]
    lock = threading.Lock()

    def worker(station_name: str, barrier: threading.Barrier, rnd: int) -> None:
        tap = TapCreate.model_validate(
            make_tap(UID, rnd + 1)  # the same key from both: the CAS decides
        )
        barrier.wait()
        with factory() as s:
            try:
                tap_service.record_tap(s, station_name=station_name, tap=tap)
                result = "created"
            except tap_service.CounterConflict:
                result = "conflict"
        with lock:
            outcomes[rnd].append(result)

    for rnd in range(rounds):
        barrier = threading.Barrier(2)
        threads = [
            threading.Thread(target=worker, args=(name, barrier, rnd))
            for name in ("till-a", "till-b")
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sorted(outcomes[rnd]) == ["conflict", "created"], (rnd, outcomes[rnd])
    assert count_rows(engine, "tap") == rounds
    assert _last_counter(engine, UID) == rounds


def test_concurrent_http_posts_from_two_stations_one_201(
    engine: Engine, settings: Any, tmp_path: Any
) -> None:
    """Same card and counter (same station-convention key) from two stations through a real
    uvicorn server: exactly one 201, the other 409, one row stored."""
    import httpx
    from tracker_server import running_server

    a = make_station(engine, "till-a")
    b = make_station(engine, "till-b")
    with running_server(settings, engine) as base_url:
        for counter in range(1, 11):
            barrier = threading.Barrier(2)
            codes: list[int] = []

            def post(
                creds: StationCredentials,
                counter: int = counter,
                barrier: threading.Barrier = barrier,
                codes: list[int] = codes,
            ) -> None:
                with httpx.Client(base_url=base_url, timeout=30) as http:
                    barrier.wait()
                    codes.append(
                        http.post(
                            "/api/v1/taps", json=make_tap(UID, counter), headers=creds.headers
                        ).status_code
                    )

            threads = [threading.Thread(target=post, args=(c,)) for c in (a, b)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            assert sorted(codes) == [201, 409], (counter, codes)
    assert count_rows(engine, "tap") == 10
    assert _last_counter(engine, UID) == 10
