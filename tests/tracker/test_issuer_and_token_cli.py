"""`tracker issuers …`, `tracker tokens …` and `tracker stations add --json` against a real
database: secrets stored sealed and never printed again; operator tokens work as Bearer on
the operator API with the user's role, and stop working when revoked."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tracker_testlib import Operator, make_tap

from tracker.cli import main
from tracker.settings import TrackerSettings

API_KEY = "greenfield-key-" + "k" * 20
SECRET = "webhook-secret-" + "s" * 20


@pytest.fixture(autouse=True)
def _env(settings: TrackerSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKER_SECRET_KEY", settings.secret_key)


def _run(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, str, str]:
    code = main(["--database-url", url, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_issuers_add_list_remove_never_show_secrets(
    engine: Engine, settings: TrackerSettings, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture, admin_client: Any,
) -> None:
    caplog.set_level(logging.DEBUG)
    url = settings.database_url
    code, out, _ = _run(capsys, url, "issuers", "add", "shop", "--kind", "btcpay", "--url",
                        "https://pay.example.com", "--store-id", "ST1", "--api-key", API_KEY,
                        "--webhook-secret", SECRET, "--json")
    assert code == 0
    assert json.loads(out)["webhook_path"] == "/webhooks/btcpay/shop"
    assert API_KEY not in out and SECRET not in out
    code, out, _ = _run(capsys, url, "issuers", "list")
    assert code == 0 and "shop" in out and API_KEY not in out and SECRET not in out
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT api_key_enc, webhook_secret_enc FROM issuer")).one()
    assert API_KEY not in row[0] and SECRET not in row[1]  # sealed at rest
    assert API_KEY not in caplog.text and SECRET not in caplog.text
    code, _, err = _run(capsys, url, "issuers", "add", "shop", "--url", "https://x.example",
                        "--store-id", "S", "--api-key", "k", "--webhook-secret", SECRET)
    assert code == 1 and "already exists" in err
    code, _, err = _run(capsys, url, "issuers", "add", "Bad Name", "--url", "https://x",
                        "--store-id", "S", "--api-key", "k", "--webhook-secret", SECRET)
    assert code == 1 and "name" in err
    page = admin_client.client.get("/api/openapi.json").text
    assert API_KEY not in page
    assert _run(capsys, url, "issuers", "remove", "shop")[0] == 0
    assert _run(capsys, url, "issuers", "remove", "shop")[0] == 1


def test_operator_tokens_carry_the_users_role_and_can_be_revoked(
    engine: Engine, settings: TrackerSettings, app: Any, viewer_user: Operator,
    admin_user: Operator, capsys: pytest.CaptureFixture[str],
) -> None:
    url = settings.database_url
    code, out, _ = _run(capsys, url, "tokens", "add", viewer_user.username, "--json")
    assert code == 0
    viewer = json.loads(out)
    assert viewer["role"] == "viewer" and viewer["token"].startswith("bcop_")
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT token_hash FROM api_token")).scalar_one()
    assert viewer["token"] not in stored
    _, out, _ = _run(capsys, url, "tokens", "add", admin_user.username, "--json")
    admin = json.loads(out)
    with TestClient(app) as client:
        as_viewer = {"Authorization": f"Bearer {viewer['token']}"}
        as_admin = {"Authorization": f"Bearer {admin['token']}"}
        assert client.get("/api/v1/payouts", headers=as_viewer).status_code == 200
        assert client.get("/api/v1/stats", headers=as_viewer).status_code == 200
        # Viewer role: no admin writes. Admin token: no CSRF header needed (no cookie).
        edit = {"alias": "front desk"}
        uid = "04A1B2C3D4E5F6"
        assert client.patch(f"/api/v1/cards/{uid}", json=edit, headers=as_viewer).status_code \
            == 403
        assert client.patch(f"/api/v1/cards/{uid}", json=edit, headers=as_admin).status_code \
            in (200, 404)
        # An operator token is not a station token.
        tap = make_tap(uid, 1)
        assert client.post("/api/v1/taps", json=tap, headers=as_admin).status_code == 401
        code, out, _ = _run(capsys, url, "tokens", "revoke", viewer["token"][5:13])
        assert code == 0
        assert client.get("/api/v1/payouts", headers=as_viewer).status_code == 401
    assert _run(capsys, url, "tokens", "add", "nobody")[0] == 1


def test_stations_add_json_after_the_subcommand(
    engine: Engine, settings: TrackerSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, settings.database_url, "stations", "add", "till-9", "--json")
    assert code == 0
    answer = json.loads(out)
    assert answer["name"] == "till-9" and answer["token"].startswith("bcst_")
