"""The dashboard's charts redraw live: /charts.html serves the same panels the page embeds."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tracker_testlib import OperatorClient, make_station, make_tap

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@SQLITE_ONLY
def test_chart_fragment_follows_new_taps_and_escapes_labels(
    viewer_client: OperatorClient, engine: Any
) -> None:
    station = make_station(engine, "till <b>7</b>")
    client = viewer_client.client

    before = client.get("/charts.html", headers={"accept": "text/html"})
    assert before.status_code == 200
    assert "till &lt;b&gt;7" not in before.text
    assert "<html" not in before.text.lower()  # a fragment, not a page

    for counter in (1, 2, 3):
        answer = client.post(
            "/api/v1/taps", json=make_tap("04A1B2C3D4E5F6", counter), headers=station.headers
        )
        assert answer.status_code == 201, answer.text

    after = client.get("/charts.html?period=today", headers={"accept": "text/html"})
    assert after.status_code == 200
    assert after.headers["cache-control"] == "no-store"
    assert "till &lt;b&gt;7&lt;/b&gt;" in after.text  # the station's bar, label escaped
    assert "<b>7</b>" not in after.text
    # each chart twice: full width, and redrawn at phone width (not scaled down to 6 px text)
    assert len(re.findall(r"<div class='chart-wide'><svg", after.text)) == 3
    assert len(re.findall(r"<div class='chart-narrow'><svg", after.text)) == 3


@SQLITE_ONLY
def test_dashboard_embeds_the_fragment_it_refreshes(viewer_client: OperatorClient) -> None:
    page = viewer_client.client.get("/?period=30d", headers={"accept": "text/html"}).text
    assert 'data-charts-url="/charts.html?period=30d"' in page
    assert len(re.findall(r"<div class='chart-wide'><svg", page)) == 3
    assert len(re.findall(r"<div class='chart-narrow'><svg", page)) == 3


@SQLITE_ONLY
def test_chart_fragment_needs_a_login(client: TestClient) -> None:
    answer = client.get("/charts.html", headers={"accept": "text/html"}, follow_redirects=False)
    assert answer.status_code == 303  # a browser is sent to sign in
    assert answer.headers["location"].startswith("/login")
