"""Times in the operator's zone: display, "today", date filters; exports keep the offset;
unknown periods answer with the allowed ones; CSV carries sats beside msat (issue 12)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select
from tracker_testlib import OperatorClient, StationCredentials, make_tap

from tracker import zones
from tracker.models import Tap

HTML = {"accept": "text/html"}
UID = "04A1B2C3D4E5F6"
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _set_zone(op: OperatorClient, name: str) -> None:
    answer = op.client.post(
        "/account/timezone",
        data={"timezone": name, "csrf_token": op.csrf},
        headers=HTML,
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text


def test_the_operators_zone_moves_times_today_and_date_filters(
    client: TestClient, station: StationCredentials, viewer_client: OperatorClient
) -> None:
    # A tap 30 minutes before the current Tokyo midnight: "today" in UTC+9 excludes it
    # (it was yesterday there), while a UTC operator may still count it.
    tokyo = zones.parse_zone("Asia/Tokyo")
    midnight = zones.today_start(tokyo)
    before = make_tap(UID, 1, when=midnight - timedelta(minutes=30))
    assert client.post("/api/v1/taps", json=before, headers=station.headers).status_code == 201
    # received_at is the server's clock: move the stored tap to that moment (the triggers
    # keep tap_daily_count in step with an UPDATE)
    with Session(client.app.state.engine) as s:  # type: ignore[attr-defined]
        tap = s.exec(select(Tap)).one()
        tap.received_at = midnight - timedelta(minutes=30)
        s.add(tap)
        s.commit()
    now_tap = make_tap(UID, 2)
    assert client.post("/api/v1/taps", json=now_tap, headers=station.headers).status_code == 201

    _set_zone(viewer_client, "Asia/Tokyo")
    summary = viewer_client.client.get("/summary.json?period=today").json()
    assert summary["taps_today"] == 1
    page = viewer_client.client.get("/taps", headers=HTML).text
    assert "Received (Asia/Tokyo)" in page
    local = (midnight - timedelta(minutes=30)).astimezone(tokyo).strftime("%Y-%m-%d %H:%M:%S")
    date_text, clock = local.split(" ")
    assert f"{date_text}</span> <span class='nw'>{clock}" in page and clock == "23:30:00"
    # a date typed into the filter is the Tokyo day
    yesterday = (midnight - timedelta(hours=1)).astimezone(tokyo).date().isoformat()
    listed = viewer_client.client.get(f"/taps?since={yesterday}&until={yesterday}", headers=HTML)
    assert listed.text.count("<tr data-id=") == 1

    _set_zone(viewer_client, "")  # back to the server's zone
    assert "Received (Asia/Tokyo)" not in viewer_client.client.get("/taps", headers=HTML).text


@SQLITE_ONLY
def test_an_unknown_zone_is_refused(viewer_client: OperatorClient) -> None:
    answer = viewer_client.client.post(
        "/account/timezone",
        data={"timezone": "Mars/Olympus", "csrf_token": viewer_client.csrf},
        headers=HTML,
    )
    assert answer.status_code == 400
    assert "Europe/Berlin" in answer.text


@SQLITE_ONLY
def test_unknown_periods_answer_with_the_allowed_ones(viewer_client: OperatorClient) -> None:
    page = viewer_client.client.get("/?period=24h", headers=HTML)
    assert page.status_code == 400
    assert "today, 7d, 30d, all" in page.text
    answer = viewer_client.client.get("/summary.json?period=24h")
    assert answer.status_code == 422
    assert answer.json()["detail"]["allowed"] == ["today", "7d", "30d", "all"]


@SQLITE_ONLY
def test_payout_csv_has_sats_and_msat_and_offsets(
    client: TestClient, station: StationCredentials, viewer_client: OperatorClient
) -> None:
    tap = client.post("/api/v1/taps", json=make_tap(UID, 1), headers=station.headers)
    assert tap.status_code == 201
    body = {"tap_idempotency_key": f"{UID}:1", "amount_msat": 21_000_500, "state": "Completed"}
    assert client.post("/api/v1/payouts", json=body, headers=station.headers).status_code == 201
    exported = viewer_client.client.get("/api/v1/payouts/export.csv").text
    (row,) = csv.DictReader(io.StringIO(exported))
    assert (row["amount_sats"], row["amount_msat"]) == ("21000", "21000500")
    created = datetime.fromisoformat(row["created"])
    assert created.utcoffset() == timedelta(0) and created.tzinfo is not None
    assert abs(created - datetime.now(UTC)) < timedelta(minutes=5)
