"""The stations page: health from heartbeats (online / offline / never reported, outbox, dead
records with what to do, version, taps today), and rotating or revoking a token (admins,
confirmation step, CSRF, the new token shown once); viewers get no buttons and 403 (issue 12)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session
from test_station_heartbeat import URL, beat
from tracker_testlib import OperatorClient, StationCredentials, make_station, make_tap

from tracker.models import HeartbeatCreate
from tracker.services import station_health
from tracker.services import stations as station_service

HTML = {"accept": "text/html"}
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _row(page: str, name: str) -> str:
    match = re.search(rf'<tr data-station="{re.escape(name)}".*?</tr>', page, re.S)
    assert match, page
    return match.group(0)


def _token(page: str) -> str:
    match = re.search(r'<code id="new-token">([^<]+)</code>', page)
    assert match, page
    return match.group(1)


def test_the_page_shows_health_from_the_heartbeats(
    client: TestClient, station: StationCredentials, viewer_client: OperatorClient,
    session: Session, engine: object,
) -> None:
    quiet = make_station(engine, "till-quiet")  # type: ignore[arg-type]
    make_station(engine, "till-new")  # type: ignore[arg-type]
    assert client.post(URL, json=beat(outbox_pending=1234, outbox_dead=2, version="0.9.1"),
                       headers=station.headers).status_code == 200
    for counter in (1, 2):
        tap = make_tap("04A1B2C3D4E5F6", counter)
        assert client.post("/api/v1/taps", json=tap, headers=station.headers).status_code == 201
    # till-quiet last reported 10 minutes ago with a 30 s period: offline
    quiet_id = station_service.get_or_create_station_id(session, name=quiet.name)
    station_health.record_heartbeat(
        session, station_id=quiet_id, beat=HeartbeatCreate(**beat(outbox_dead=0, problem=None)),
        now=datetime.now(UTC) - timedelta(minutes=10))

    page = viewer_client.client.get("/stations", headers=HTML).text
    online = _row(page, "till-1")
    assert 'data-health="online"' in online and ">online<" in online
    assert "1\u202f234" in online  # outbox depth, in the one number format
    assert 'class="num dead"' in online and "0.9.1" in online
    assert 'data-col="taps-today">2<' in online
    assert "tracker unreachable since 12:00" in online  # the station's own problem, in words
    assert ">offline<" in _row(page, "till-quiet")
    assert 'class="num dead"' not in _row(page, "till-quiet")
    new = _row(page, "till-new")
    assert ">never reported<" in new and "never</td>" in new
    assert "data-dead-help" in page and "till-1 (2)" in page and "record_dead" in page
    # viewers: no token buttons
    assert 'data-action="rotate"' not in page and "/stations/token" not in page


@SQLITE_ONLY
def test_no_dead_records_no_help_box(
    client: TestClient, station: StationCredentials, viewer_client: OperatorClient,
) -> None:
    assert client.post(URL, json=beat(outbox_dead=0), headers=station.headers).status_code == 200
    page = viewer_client.client.get("/stations", headers=HTML).text
    assert "data-dead-help" not in page and 'class="num dead"' not in page


def test_rotate_asks_first_then_shows_the_new_token_once(
    client: TestClient, station: StationCredentials, admin_client: OperatorClient,
) -> None:
    c = admin_client.client
    page = c.get("/stations", headers=HTML).text
    assert 'href="/stations/token?action=rotate&amp;name=till-1"' in page
    confirm = c.get("/stations/token?action=rotate&name=till-1", headers=HTML)
    assert confirm.status_code == 200
    assert "stops working within 2 seconds" in confirm.text
    assert client.post(URL, json=beat(), headers=station.headers).status_code == 200  # still
    # without the CSRF token nothing happens
    forged = c.post("/stations/rotate", data={"name": "till-1"}, headers=HTML)
    assert forged.status_code == 403
    assert client.post(URL, json=beat(), headers=station.headers).status_code == 200

    answer = c.post("/stations/rotate", data={"name": "till-1", "csrf_token": admin_client.csrf},
                    headers=HTML)
    assert answer.status_code == 200
    new = _token(answer.text)
    assert "only this once" in answer.text and f'data-copy="{new}"' in answer.text
    assert "/static/copy.js" in answer.text
    assert client.post(URL, json=beat(), headers=station.headers).status_code == 401
    assert client.post(URL, json=beat(), headers={"Authorization": f"Bearer {new}"}
                       ).status_code == 200
    assert new not in c.get("/stations", headers=HTML).text  # never shown again
    logged = c.get("/api/v1/audit", params={"action": "station.rotate"}).json()["items"]
    assert [(e["actor"], e["target_id"]) for e in logged] == [("admin", "till-1")]
    assert new not in c.get("/api/v1/audit/export.csv").text


def test_revoke_asks_first_then_the_token_stops_working(
    client: TestClient, station: StationCredentials, admin_client: OperatorClient,
) -> None:
    c = admin_client.client
    confirm = c.get("/stations/token?action=revoke&name=till-1", headers=HTML)
    assert confirm.status_code == 200 and "Revoke token" in confirm.text
    answer = c.post("/stations/revoke", data={"name": "till-1", "csrf_token": admin_client.csrf},
                    headers=HTML)
    assert answer.status_code == 200
    assert "is revoked" in answer.text
    assert client.post(URL, json=beat(), headers=station.headers).status_code == 401
    row = _row(answer.text, "till-1")
    assert "no token" in row and 'data-action="revoke"' not in row  # nothing left to revoke
    assert 'data-action="rotate"' in row


@SQLITE_ONLY
@pytest.mark.parametrize("path", [
    "/stations/token?action=rotate&name=nobody",
    "/stations/token?action=explode&name=till-1",
    "/stations/token?action=rotate&name=" + "x" * 101,
    "/stations/token?action=rotate",
])
def test_bad_confirmation_requests_are_4xx(
    admin_client: OperatorClient, station: StationCredentials, path: str,
) -> None:
    answer = admin_client.client.get(path, headers=HTML)
    assert 400 <= answer.status_code < 500, answer.text


@SQLITE_ONLY
@pytest.mark.parametrize("form", [{"name": "nobody"}, {"name": ""}, {"name": "x" * 101}, {}])
def test_bad_token_changes_are_4xx(
    admin_client: OperatorClient, station: StationCredentials, form: dict[str, str],
    client: TestClient,
) -> None:
    for action in ("rotate", "revoke"):
        answer = admin_client.client.post(
            f"/stations/{action}", data={**form, "csrf_token": admin_client.csrf}, headers=HTML)
        assert 400 <= answer.status_code < 500, answer.text
    assert client.post(URL, json=beat(), headers=station.headers).status_code == 200


def test_viewers_get_403_on_token_changes(
    client: TestClient, station: StationCredentials, viewer_client: OperatorClient,
) -> None:
    c = viewer_client.client
    assert c.get("/stations/token?action=rotate&name=till-1", headers=HTML).status_code == 403
    for action in ("rotate", "revoke"):
        answer = c.post(f"/stations/{action}",
                        data={"name": "till-1", "csrf_token": viewer_client.csrf}, headers=HTML)
        assert answer.status_code == 403
    assert client.post(URL, json=beat(), headers=station.headers).status_code == 200


def test_control_characters_in_a_station_name_are_4xx_on_both_databases(
    admin_client: OperatorClient, station: StationCredentials, client: TestClient,
) -> None:
    c = admin_client.client
    assert c.get("/stations/token?action=rotate&name=till%00", headers=HTML).status_code == 400
    for action in ("rotate", "revoke"):
        answer = c.post(f"/stations/{action}",
                        data={"name": "till-1\x00", "csrf_token": admin_client.csrf},
                        headers=HTML)
        assert answer.status_code == 400, answer.text
    assert client.post(URL, json=beat(), headers=station.headers).status_code == 200


@SQLITE_ONLY
def test_taps_today_and_the_last_heartbeat_follow_the_operators_zone(
    client: TestClient, station: StationCredentials, viewer_client: OperatorClient,
) -> None:
    from sqlmodel import select

    from tracker import zones
    from tracker.models import Tap

    tokyo = zones.parse_zone("Asia/Tokyo")
    midnight = zones.today_start(tokyo)
    for counter in (1, 2):
        tap = make_tap("04A1B2C3D4E5F6", counter)
        assert client.post("/api/v1/taps", json=tap, headers=station.headers).status_code == 201
    with Session(client.app.state.engine) as s:  # type: ignore[attr-defined]
        first = s.exec(select(Tap).order_by(Tap.id)).first()  # type: ignore[arg-type]
        assert first is not None
        first.received_at = midnight - timedelta(minutes=30)  # yesterday in Tokyo
        s.add(first)
        s.commit()
    assert client.post(URL, json=beat(), headers=station.headers).status_code == 200

    answer = viewer_client.client.post(
        "/account/timezone", data={"timezone": "Asia/Tokyo", "csrf_token": viewer_client.csrf},
        headers=HTML, follow_redirects=False)
    assert answer.status_code == 303
    page = viewer_client.client.get("/stations", headers=HTML).text
    assert "Last heartbeat (Asia/Tokyo)" in page
    assert 'data-col="taps-today">1<' in _row(page, "till-1")
    with Session(client.app.state.engine) as s:  # type: ignore[attr-defined]
        received = station_health.find(s, "till-1")
    assert received is not None and received.heartbeat is not None
    local = received.heartbeat.received_at.astimezone(tokyo).strftime("%H:%M:%S")
    assert local in _row(page, "till-1")


@SQLITE_ONLY
def test_what_a_station_reports_is_shown_as_text(
    client: TestClient, station: StationCredentials, viewer_client: OperatorClient,
) -> None:
    hostile = beat(problem='<script>alert("x")</script>', version="<b>1</b>")
    assert client.post(URL, json=hostile, headers=station.headers).status_code == 200
    page = viewer_client.client.get("/stations", headers=HTML).text
    assert "<script>alert" not in page and "<b>1</b>" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
