"""The audit log, on SQLite and PostgreSQL: what operators do on the site, with an API token
and on the command line is recorded once, newest first, without secrets; admins read it
through ``/api/v1/audit``, the ``/audit`` page and the exports; viewers are refused."""

from __future__ import annotations

import csv
import getpass
import io
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tracker_testlib import Operator, OperatorClient, login, login_form_token, make_tap

from tracker.cli import main
from tracker.settings import TrackerSettings

UID = "04A1B2C3D4E5F6"
HTML = {"accept": "text/html"}


def _rows(engine: Engine) -> list[dict[str, Any]]:
    """The audit table in plain SQL, oldest first (independent of the service under test)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT actor, actor_kind, action, target_type, target_id, detail, address "
                    "FROM audit_event ORDER BY id")
        ).mappings()
        return [dict(r) for r in rows]


def _first_tap(client: TestClient, station_token: str) -> None:
    answer = client.post(
        "/api/v1/taps", json=make_tap(UID, 1), headers={"Authorization": f"Bearer {station_token}"}
    )
    assert answer.status_code == 201, answer.text


def _api(client: TestClient, **params: str) -> list[dict[str, Any]]:
    answer = client.get("/api/v1/audit", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]  # type: ignore[no-any-return]


def test_sign_in_out_and_card_edits_are_recorded_in_order(
    engine: Engine,
    app: Any,
    admin_user: Operator,
    admin_client: OperatorClient,
    station_token: str,
) -> None:
    c = admin_client.client
    _first_tap(c, station_token)
    w = admin_client.write_headers
    c.patch(f"/api/v1/cards/{UID}", json={"alias": "Till float", "holder": "Bob"}, headers=w)
    c.patch(f"/api/v1/cards/{UID}", json={"notes": "secret-ish note"}, headers=w)
    c.patch(f"/api/v1/cards/{UID}", json={"status": "blocked", "reason": "lost"}, headers=w)
    c.patch(f"/api/v1/cards/{UID}", json={"status": "active", "reason": "found"}, headers=w)
    c.patch(f"/api/v1/cards/{UID}", json={"alias": "Till float"}, headers=w)  # no change
    with TestClient(app) as other:
        token = login_form_token(other)
        wrong = other.post("/login", data={"username": "admin", "password": "nope-nope",
                                           "csrf_token": token})
        assert wrong.status_code == 401
        typo = other.post("/login", data={"username": "hunter2-password", "password": "x",
                                          "csrf_token": token})
        assert typo.status_code == 401
    c.post("/logout", data={"csrf_token": admin_client.csrf})

    rows = _rows(engine)
    assert [(r["action"], r["actor"], r["actor_kind"]) for r in rows] == [
        ("auth.login", "admin", "session"),
        ("card.alias", "admin", "session"),
        ("card.holder", "admin", "session"),
        ("card.notes", "admin", "session"),
        ("card.block", "admin", "session"),
        ("card.unblock", "admin", "session"),
        ("auth.login_failed", "admin", "anonymous"),
        ("auth.login_failed", "(unknown name)", "anonymous"),
        ("auth.logout", "admin", "session"),
    ]
    assert all(r["address"] == "testclient" for r in rows)
    cards = [r for r in rows if r["target_type"] == "card"]
    assert {r["target_id"] for r in cards} == {UID}
    assert [r["detail"] for r in cards] == [
        "alias set to 'Till float'", "holder set to 'Bob'", "notes changed", "lost", "found"
    ]
    everything = json.dumps(rows)
    assert "secret-ish" not in everything  # notes stay on the card
    assert "hunter2" not in everything  # a name that is no user is not kept


def test_api_is_for_admins_filters_pages_and_exports(
    engine: Engine,
    client: TestClient,
    admin_client: OperatorClient,
    viewer_client: OperatorClient,
    station_token: str,
) -> None:
    c = admin_client.client
    # Viewers and strangers are refused; so is an unknown action or a forged cursor.
    assert viewer_client.client.get("/api/v1/audit").status_code == 403
    assert viewer_client.client.get("/api/v1/audit/export.csv").status_code == 403
    assert viewer_client.client.get("/audit", headers=HTML).status_code == 403
    assert client.get("/api/v1/audit").status_code == 401
    assert c.get("/api/v1/audit", params={"action": "card.explode"}).status_code == 422
    assert c.get("/api/v1/audit", params={"cursor": "AAAA"}).status_code == 422

    # A station name that a spreadsheet would run as a formula.
    hostile = '=HYPERLINK("http://x.example","y")'
    added = c.post("/stations", data={"name": hostile, "csrf_token": admin_client.csrf})
    assert added.status_code == 200
    station_secret = re.search(r'<code id="new-token">([^<]+)</code>', added.text)
    for n in range(3):
        c.post("/api/v1/taps", json=make_tap(UID, n + 1),
               headers={"Authorization": f"Bearer {station_token}"})
        c.patch(f"/api/v1/cards/{UID}", json={"alias": f"name {n}"},
                headers=admin_client.write_headers)

    everyone = _api(c)
    actions = [e["action"] for e in everyone]
    assert actions == ["card.alias"] * 3 + ["station.add", "auth.login", "auth.login"]
    assert [e["detail"] for e in everyone[:3]] == [
        "alias set to 'name 2'", "alias set to 'name 1'", "alias set to 'name 0'"
    ]
    assert _api(c, action="station.add")[0]["target_id"] == hostile
    assert {e["actor"] for e in _api(c, actor="viewer")} == {"viewer"}
    # Paging: two at a time, no repeats, the same order.
    first = c.get("/api/v1/audit", params={"limit": 2}).json()
    second = c.get("/api/v1/audit", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [e["id"] for e in first["items"] + second["items"]] == [e["id"] for e in everyone[:4]]
    # Date range: nothing tomorrow, everything since yesterday.
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert _api(c, since=tomorrow) == []
    assert len(_api(c, since=yesterday, until=tomorrow)) == len(everyone)

    rows = list(csv.DictReader(io.StringIO(c.get("/api/v1/audit/export.csv").text)))
    assert [r["action"] for r in rows] == actions
    station_row = next(r for r in rows if r["action"] == "station.add")
    assert station_row["target_id"] == "'" + hostile  # neutralised
    assert station_row["action_text"] == "added a station"
    assert station_row["at"].endswith("+00:00")
    exported = c.get("/api/v1/audit/export.json", params={"action": "card.alias"}).json()
    assert [e["detail"] for e in exported] == [e["detail"] for e in everyone[:3]]
    assert station_secret is not None
    assert station_secret.group(1) not in json.dumps(_rows(engine))


def test_api_token_actions_are_recorded_as_the_tokens_user(
    engine: Engine,
    settings: TrackerSettings,
    admin_client: OperatorClient,
    station_token: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRACKER_SECRET_KEY", settings.secret_key)
    c = admin_client.client
    _first_tap(c, station_token)
    assert main(["--database-url", settings.database_url, "--json", "tokens", "add", "admin"]) == 0
    token = json.loads(capsys.readouterr().out)["token"]
    with TestClient(c.app) as script:  # type: ignore[arg-type]
        answer = script.patch(f"/api/v1/cards/{UID}", json={"alias": "by script"},
                              headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text
    last = _rows(engine)[-1]
    assert (last["action"], last["actor"], last["actor_kind"]) == ("card.alias", "admin", "token")
    assert token not in json.dumps(_rows(engine))


def test_cli_actions_are_recorded_as_cli_with_the_os_user_and_no_secrets(
    engine: Engine,
    settings: TrackerSettings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRACKER_SECRET_KEY", settings.secret_key)
    url = settings.database_url
    printed: list[str] = []

    def run(*args: str) -> None:
        assert main(["--database-url", url, *args]) == 0
        printed.append(capsys.readouterr().out)

    run("users", "add", "carol", "--role", "viewer")
    run("users", "role", "carol", "admin")
    run("users", "passwd", "carol")
    run("users", "disable", "carol")
    run("users", "remove", "carol")
    run("stations", "add", "till-9")
    run("stations", "rotate", "till-9")
    run("stations", "revoke", "till-9")
    run("users", "add", "dave", "--role", "admin")
    run("--json", "tokens", "add", "dave")
    token_id = str(json.loads(printed[-1])["id"])
    run("tokens", "revoke", token_id)
    run("issuers", "add", "shop", "--kind", "btcpay", "--url", "https://u:pw@pay.example.com",
        "--store-id", "ST1", "--api-key", "greenfield-key-abcdef",
        "--webhook-secret", "webhook-secret-0123456789")
    run("issuers", "remove", "shop")
    assert main(["--database-url", url, "users", "remove", "nobody"]) == 1  # refused: no row
    capsys.readouterr()

    rows = _rows(engine)
    me = f"cli:{getpass.getuser()}"
    assert {(r["actor"], r["actor_kind"], r["address"]) for r in rows} == {(me, "cli", None)}
    assert [(r["action"], r["target_id"]) for r in rows] == [
        ("user.add", "carol"),
        ("user.role", "carol"),
        ("user.passwd", "carol"),
        ("user.disable", "carol"),
        ("user.remove", "carol"),
        ("station.add", "till-9"),
        ("station.rotate", "till-9"),
        ("station.revoke", "till-9"),
        ("user.add", "dave"),
        ("token.add", token_id),
        ("token.revoke", token_id),
        ("issuer.add", "shop"),
        ("issuer.remove", "shop"),
    ]
    assert rows[1]["detail"] == "role admin"
    assert rows[11]["detail"] == "pay.example.com, store ST1"
    stored = json.dumps(rows)
    # Every secret the commands printed (passwords, station and API tokens) and the issuer's
    # keys are absent from the log.
    secrets_shown = re.findall(r"(?:password|token): (\S+)", "\n".join(printed))
    secrets_shown.append(json.loads(printed[9])["token"])
    assert len(secrets_shown) >= 5
    for secret in [*secrets_shown, "greenfield-key-abcdef", "webhook-secret-0123456789", "pw@"]:
        assert secret not in stored


def test_audit_page_lists_filters_by_day_in_the_operators_zone(
    engine: Engine, admin_client: OperatorClient, station_token: str
) -> None:
    c = admin_client.client
    c.post("/account/timezone", data={"timezone": "Pacific/Kiritimati",
                                      "csrf_token": admin_client.csrf})
    _first_tap(c, station_token)
    c.patch(f"/api/v1/cards/{UID}", json={"status": "blocked", "reason": "lost"},
            headers=admin_client.write_headers)
    # Move the sign-in to 09:00 UTC two days ago: 23:00 that day in Kiritimati (UTC+14), so
    # the filter for that local day finds it, and a UTC reading of the day would not.
    with engine.begin() as conn:
        moment = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) - timedelta(
            days=2
        )
        stored: Any = moment if engine.dialect.name != "sqlite" else moment.replace(tzinfo=None)
        conn.execute(sa.text("UPDATE audit_event SET at = :t WHERE action = 'auth.login'"),
                     {"t": stored})
    local_day = (moment + timedelta(hours=14)).date().isoformat()
    page = c.get("/audit", headers=HTML)
    assert page.status_code == 200
    assert re.findall(r'<tr data-id="\d+" data-action="([^"]+)"', page.text) == [
        "card.block", "auth.login"
    ]
    assert "blocked a card" in page.text and "Time (Pacific/Kiritimati)" in page.text
    same_day = c.get("/audit", params={"since": local_day, "until": local_day}, headers=HTML)
    assert re.findall(r'data-action="([^"]+)"', same_day.text) == ["auth.login"]
    # The export links carry the same day as ISO moments (local midnight, with the offset).
    midnight = (moment.date() - timedelta(days=1)).isoformat()  # 00:00 at UTC+14
    assert f"since={midnight}T10%3A00%3A00%2B00%3A00" in same_day.text
    bad = c.get("/audit", params={"since": "yesterday"}, headers=HTML)
    assert bad.status_code == 400 and "must be a date" in bad.text
    empty = c.get("/audit", params={"action": "issuer.remove"}, headers=HTML)
    assert "No actions recorded for these filters" in empty.text


def test_a_fresh_login_is_recorded_with_the_signed_in_name(
    engine: Engine, app: Any, viewer_user: Operator
) -> None:
    with TestClient(app) as c:
        login(c, viewer_user)
        assert c.get("/api/v1/audit").status_code == 403
    assert [(r["action"], r["actor"]) for r in _rows(engine)] == [("auth.login", "viewer")]
