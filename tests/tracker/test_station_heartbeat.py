"""``POST /api/v1/stations/heartbeat``: a station's health, stored per station on SQLite and
PostgreSQL; the token is checked before the body; hostile bodies are 422, never 500; the
list shows online, offline after three of the station's periods, and "never" (issue 12)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session
from tracker_testlib import OperatorClient, StationCredentials, count_rows, make_station, make_tap

from tracker import zones
from tracker.models import HeartbeatCreate
from tracker.services import station_health
from tracker.services import stations as station_service

URL = "/api/v1/stations/heartbeat"
HTML = {"accept": "text/html"}


def beat(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "version": "0.1.0",
        "started_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        "uptime_s": 300,
        "period_s": 30,
        "outbox_pending": 4,
        "outbox_dead": 1,
        "readers_present": 1,
        "readers_total": 2,
        "problem": "tracker unreachable since 12:00",
    }
    body.update(changes)
    return body


def _listed(op: OperatorClient, name: str) -> dict[str, Any]:
    rows = op.client.get("/api/v1/stations").json()
    return next(r for r in rows if r["name"] == name)


def test_a_heartbeat_is_stored_and_replaces_the_previous_one(
    client: TestClient, station: StationCredentials, viewer_client: OperatorClient,
    engine: Engine,
) -> None:
    make_station(engine, "till-2")  # never reports
    assert _listed(viewer_client, "till-1")["state"] == "never"

    first = client.post(URL, json=beat(), headers=station.headers)
    assert first.status_code == 200, first.text
    second = client.post(URL, json=beat(outbox_pending=0, outbox_dead=0, problem=None,
                                        uptime_s=330), headers=station.headers)
    assert second.status_code == 200, second.text
    assert count_rows(engine, "station_heartbeat") == 1

    row = _listed(viewer_client, "till-1")
    assert row["state"] == "online"
    hb = row["heartbeat"]
    assert (hb["outbox_pending"], hb["outbox_dead"], hb["uptime_s"], hb["problem"]) == (
        0, 0, 330, None)
    assert (hb["readers_present"], hb["readers_total"], hb["version"]) == (1, 2, "0.1.0")
    assert row["last_seen"] is not None  # a heartbeat is also being heard from
    assert _listed(viewer_client, "till-2") | {"heartbeat": None} == _listed(
        viewer_client, "till-2")
    assert _listed(viewer_client, "till-2")["state"] == "never"


def test_offline_after_three_of_the_stations_own_periods(
    engine: Engine, station: StationCredentials, session: Session,
) -> None:
    station_id = station_service.get_or_create_station_id(session, name=station.name)
    sent = datetime.now(UTC)
    station_health.record_heartbeat(
        session, station_id=station_id, beat=HeartbeatCreate(**beat(period_s=10)), now=sent)

    def state_at(seconds: float) -> str:
        [row] = station_health.overview(session, now=sent + timedelta(seconds=seconds))
        return row.state

    assert state_at(29) == "online"
    assert state_at(31) == "offline"


def test_taps_today_count_the_operators_day(
    client: TestClient, station: StationCredentials, session: Session,
) -> None:
    for counter in (1, 2, 3):
        tap = make_tap("04A1B2C3D4E5F6", counter)
        assert client.post("/api/v1/taps", json=tap, headers=station.headers).status_code == 201
    refused = make_tap("04A1B2C3D4E5F6", 3, outcome="refused", reason="counter_not_increasing")
    assert client.post("/api/v1/taps", json=refused, headers=station.headers).status_code == 201
    [row] = station_health.overview(session, zone=zones.parse_zone("Pacific/Kiritimati"))
    assert row.taps_today == 4
    # a day that starts after now has no taps yet
    [later] = station_health.overview(
        session, zone=zones.parse_zone("UTC"), now=datetime.now(UTC) + timedelta(days=1))
    assert later.taps_today == 0


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer not-a-token"},
    {"Authorization": "Basic dXNlcjpwYXNz"},
])
def test_no_station_token_is_401(
    client: TestClient, station: StationCredentials, headers: dict[str, str], engine: Engine,
) -> None:
    answer = client.post(URL, json=beat(), headers=headers)
    assert answer.status_code == 401
    assert count_rows(engine, "station_heartbeat") == 0


def test_a_revoked_token_is_401_at_once(
    client: TestClient, station: StationCredentials, engine: Engine,
) -> None:
    assert client.post(URL, json=beat(), headers=station.headers).status_code == 200  # cached
    with client.app.state.sessionmaker() as s:  # type: ignore[attr-defined]  # revoked here
        station_service.revoke_token(s, name=station.name)
    answer = client.post(URL, json=beat(uptime_s=999), headers=station.headers)
    assert answer.status_code == 401
    assert count_rows(engine, "station_heartbeat", "uptime_s = 999") == 0


def test_a_rotated_token_replaces_the_old_one(
    client: TestClient, station: StationCredentials,
) -> None:
    assert client.post(URL, json=beat(), headers=station.headers).status_code == 200  # cached
    with client.app.state.sessionmaker() as s:  # type: ignore[attr-defined]
        new = station_service.rotate_token(s, name=station.name)
    assert client.post(URL, json=beat(), headers=station.headers).status_code == 401
    answer = client.post(URL, json=beat(), headers={"Authorization": f"Bearer {new}"})
    assert answer.status_code == 200


HOSTILE: list[tuple[str, Any]] = [
    ("negative depth", beat(outbox_pending=-1)),
    ("dead beyond range", beat(outbox_dead=10**12)),
    ("int past 64 bits", beat(outbox_pending=2**70)),
    ("more readers present than configured", beat(readers_present=3, readers_total=2)),
    ("period zero", beat(period_s=0)),
    ("period of a week", beat(period_s=7 * 86400)),
    ("period as text", beat(period_s="thirty")),
    ("naive started_at", beat(started_at="2026-12-06T10:00:00")),
    ("started_at in year 9999", beat(started_at="9999-12-31T23:59:59+00:00")),
    ("started_at overflowing UTC", beat(started_at="0001-01-01T00:00:00+14:00")),
    ("NUL in version", beat(version="0.1\x00")),
    ("lone surrogate in problem", beat(problem="\ud800")),
    ("version too long", beat(version="1" * 41)),
    ("problem too long", beat(problem="x" * 301)),
    ("empty version", beat(version="")),
    ("missing fields", {"version": "0.1.0"}),
    ("a list", [beat()]),
    ("a string", "hello"),
]


@pytest.mark.parametrize("body", [b for _, b in HOSTILE], ids=[n for n, _ in HOSTILE])
def test_hostile_bodies_are_422(
    client: TestClient, station: StationCredentials, body: Any, engine: Engine,
) -> None:
    answer = client.post(URL, content=json.dumps(body), headers={
        **station.headers, "content-type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert count_rows(engine, "station_heartbeat") == 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("raw", [b'{"period_s": NaN', b"{" * 5000, b"\xff\xfe"])
def test_bodies_that_are_not_json_are_422(
    client: TestClient, station: StationCredentials, raw: bytes,
) -> None:
    answer = client.post(URL, content=raw, headers={
        **station.headers, "content-type": "application/json"})
    assert answer.status_code == 422, answer.text


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_nan_and_infinity_periods_are_422(
    client: TestClient, station: StationCredentials, engine: Engine,
) -> None:
    for word in ("NaN", "Infinity", "-Infinity"):
        raw = json.dumps(beat(period_s=0.5)).replace("0.5", word).encode()
        answer = client.post(URL, content=raw, headers={
            **station.headers, "content-type": "application/json"})
        assert answer.status_code == 422, (word, answer.text)
    assert count_rows(engine, "station_heartbeat") == 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_body_limits_and_the_token_come_before_the_body(
    client: TestClient, station: StationCredentials,
) -> None:
    big = b"{" + b" " * (2 * 1024 * 1024) + b"}"
    assert client.post(URL, content=big, headers=station.headers).status_code == 413
    junk = b"[" * 500_000  # under the limit, but no valid body: the bad token answers first
    assert client.post(URL, content=junk, headers={"Authorization": "Bearer nope"}
                       ).status_code == 401
    assert client.post(URL, content=junk, headers=station.headers).status_code == 422


def test_metrics_show_station_health_and_reconcile_lag(
    client: TestClient, station: StationCredentials, admin_client: OperatorClient,
    engine: Engine,
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    make_station(engine, "till-2")  # never reports
    assert client.post(URL, json=beat(outbox_pending=4, outbox_dead=1),
                       headers=station.headers).status_code == 200
    reconciled = datetime.now(UTC) - timedelta(seconds=120)
    with engine.begin() as conn:
        for name, last in (("shop", reconciled), ("never", None)):
            conn.execute(sa.text(
                "INSERT INTO issuer (name, kind, url, store_id, api_key_enc, "
                "webhook_secret_enc, created, last_reconciled) VALUES "
                "(:n, 'btcpay', 'http://127.0.0.1:1', 's', 'x', 'x', :c, :l)"),
                {"n": name, "c": datetime.now(UTC), "l": last})
    text = admin_client.client.get("/metrics").text
    found = {(s.name, tuple(sorted(s.labels.items()))): s.value
             for family in text_string_to_metric_families(text) for s in family.samples}
    assert found[("tracker_stations_online", ())] == 1
    assert found[("tracker_station_online", (("station", "till-1"),))] == 1
    assert found[("tracker_station_online", (("station", "till-2"),))] == 0
    assert found[("tracker_station_outbox_pending", (("station", "till-1"),))] == 4
    assert found[("tracker_station_outbox_dead", (("station", "till-1"),))] == 1
    assert ("tracker_station_outbox_pending", (("station", "till-2"),)) not in found
    assert 119 <= found[("tracker_reconcile_lag_seconds", (("issuer", "shop"),))] < 180
    assert found[("tracker_reconcile_lag_seconds", (("issuer", "never"),))] == float("inf")
