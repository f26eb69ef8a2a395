"""``GET /metrics``: Prometheus text whose counts are the database's rows (on SQLite and
PostgreSQL), request latencies by route template, and no access without an admin or the
scrape token."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine
from tracker_testlib import OperatorClient, StationCredentials, make_tap

from tracker.settings import TrackerSettings, load_settings
from tracker.web.app import create_app

UID = "04A1B2C3D4E5F6"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _claim(tap_key: str, state: str) -> dict[str, Any]:
    return {
        "claim_id": secrets.token_hex(16),
        "tap_key": tap_key,
        "state": state,
        "amount_msat": 21_000,
        "memo": None,
        "bolt11": None,
        "payment_hash": secrets.token_hex(32),
        "issuer_host": "pay.example.com",
        "k1_hash": hashlib.sha256(secrets.token_bytes(8)).hexdigest(),
        "reason": None,
        "station_time": datetime.now(UTC).isoformat(),
    }


def _fill(client: TestClient, station: StationCredentials) -> None:
    """3 accepted taps (claims: claimed, paid, refused) and 2 refused taps."""
    for counter, state in ((1, "claimed"), (2, "paid"), (3, "refused")):
        body = make_tap(UID, counter)
        assert client.post("/api/v1/taps", json=body, headers=station.headers).status_code == 201
        claim = _claim(str(body["idempotency_key"]), state)
        answer = client.post("/api/v1/claims", json=claim, headers=station.headers)
        assert answer.status_code == 201, answer.text
    for _ in range(2):
        body = make_tap(UID, 0, outcome="refused", reason="bad_cmac")
        assert client.post("/api/v1/taps", json=body, headers=station.headers).status_code == 201


def test_metrics_count_the_rows_and_time_the_requests(
    admin_client: OperatorClient, station: StationCredentials
) -> None:
    client = admin_client.client
    _fill(client, station)
    assert client.get("/api/v1/cards/04A1B2C3D4E5F6").status_code == 200
    assert client.get("/no/such/page").status_code == 404

    answer = client.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    found = _samples(answer.text)
    assert found[("tracker_taps_total", (("outcome", "accepted"),))] == 3
    assert found[("tracker_taps_total", (("outcome", "refused"),))] == 2
    for state, n in (("claimed", 1), ("paid", 1), ("refused", 1), ("sending", 0)):
        assert found[("tracker_claims", (("state", state),))] == n
    for state, n in (("AwaitingPayment", 1), ("Completed", 1), ("Failed", 1), ("Unknown", 0)):
        assert found[("tracker_payouts", (("state", state),))] == n
    card = (("method", "GET"), ("route", "/api/v1/cards/{uid}"), ("status", "200"))
    assert found[("tracker_http_request_duration_seconds_count", card)] == 1
    taps = (("method", "POST"), ("route", "/api/v1/taps"), ("status", "201"))
    assert found[("tracker_http_request_duration_seconds_count", taps)] == 5
    stray = (("method", "GET"), ("route", "(unmatched)"), ("status", "404"))
    assert found[("tracker_http_request_duration_seconds_count", stray)] == 1
    assert not any("/no/such/page" in str(labels) for _, labels in found)


def test_two_apps_on_one_database_report_the_same_counts(
    admin_client: OperatorClient,
    station: StationCredentials,
    settings: TrackerSettings,
    engine: Engine,
) -> None:
    _fill(admin_client.client, station)
    other = create_app(
        replace(settings, metrics_token="scrape-" + secrets.token_hex(8)), engine=engine
    )
    with TestClient(other) as client:
        token = other.state.settings.metrics_token
        answer = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    first = _samples(admin_client.client.get("/metrics").text)
    second = _samples(answer.text)
    for key in (
        ("tracker_taps_total", (("outcome", "accepted"),)),
        ("tracker_payouts", (("state", "Completed"),)),
    ):
        assert first[key] == second[key] > 0


def test_metrics_are_never_public(
    client: TestClient, viewer_client: OperatorClient, settings: TrackerSettings, engine: Engine
) -> None:
    assert client.get("/metrics").status_code == 401
    # no token configured: no bearer opens it, not even an empty-looking one
    assert client.get("/metrics", headers={"Authorization": "Bearer x"}).status_code == 401
    assert viewer_client.client.get("/metrics").status_code == 403
    token = "right-" + secrets.token_hex(8)
    from_env = load_settings(
        env={"TRACKER_METRICS_TOKEN": token},
        database_url=settings.database_url,
        secret_key=settings.secret_key,
        persist_secret=False,
    )
    assert token not in repr(from_env)
    guarded = create_app(from_env, engine=engine)
    with TestClient(guarded) as c:
        assert c.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/metrics").status_code == 401
        assert "tracker_taps_total" not in c.get("/metrics").text
        assert c.get("/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 200
