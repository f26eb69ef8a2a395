"""The `tracker` command line against a real database file / PostgreSQL database."""

from __future__ import annotations

import io
import json
import re

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from tracker_testlib import make_tap

from tracker import migrations
from tracker.cli import main
from tracker.db import make_engine, make_sessionmaker
from tracker.security import hash_token
from tracker.services import users as user_service
from tracker.settings import load_settings
from tracker.web.app import create_app


def _run(capsys: pytest.CaptureFixture[str], db_url: str, *args: str) -> tuple[int, str, str]:
    code = main(["--database-url", db_url, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_db_upgrade_current_and_downgrade(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, db_url, "--json", "db", "current")
    head = migrations.head_revision()
    assert code == 0 and json.loads(out) == {"current": None, "head": head, "up_to_date": False}
    code, out, _ = _run(capsys, db_url, "--json", "db", "upgrade")
    assert json.loads(out)["up_to_date"] is True
    code, out, _ = _run(capsys, db_url, "db", "current")
    assert "up to date" in out
    code, out, _ = _run(capsys, db_url, "--json", "db", "downgrade")
    script = ScriptDirectory.from_config(migrations.alembic_config())
    below_head = script.get_revision(head).down_revision
    assert json.loads(out)["current"] == below_head  # one step back from head


def test_commands_refuse_an_unmigrated_database(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, db_url, "stations", "add", "till-1")
    assert code == 1
    assert "run `tracker db upgrade`" in err
    code, _, err = _run(capsys, db_url, "serve", "--port", "1")
    assert code == 1
    assert "run `tracker db upgrade`" in err


def test_users_add_generates_or_reads_password(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(capsys, db_url, "db", "upgrade")
    code, out, _ = _run(capsys, db_url, "users", "add", "alice", "--role", "admin")
    assert code == 0
    password = re.search(r"password: (\S+)", out).group(1)  # type: ignore[union-attr]
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-secret-pw\n"))
    code, out, _ = _run(capsys, db_url, "users", "add", "bob", "--password-stdin")
    assert code == 0 and "a-long-secret-pw" not in out
    code, _, err = _run(capsys, db_url, "users", "add", "bob")
    assert code == 1 and "already exists" in err

    engine = make_engine(db_url)
    try:
        with make_sessionmaker(engine)() as s:
            alice = user_service.authenticate(s, username="alice", password=password)
            bob = user_service.authenticate(s, username="bob", password="a-long-secret-pw")
            assert alice is not None and alice.role.value == "admin"
            assert bob is not None and bob.role.value == "viewer"
            assert user_service.authenticate(s, username="bob", password=password) is None
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT password_hash FROM user_account")).scalars()
            assert all(password not in h and "a-long-secret-pw" not in h for h in stored)
    finally:
        engine.dispose()


def test_stations_add_prints_token_once_and_stores_only_its_hash(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(capsys, db_url, "db", "upgrade")
    code, out, _ = _run(capsys, db_url, "--json", "stations", "add", "till-9")
    assert code == 0
    token = json.loads(out)["token"]
    code, _, err = _run(capsys, db_url, "stations", "add", "till-9")
    assert code == 1 and "already exists" in err
    code, out, _ = _run(capsys, db_url, "stations", "list")
    assert "till-9\tnever reported" in out and token not in out

    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT token_hash FROM station")).scalar_one()
        assert stored == hash_token(token)
        settings = load_settings(env={}, database_url=db_url, secret_key="k" * 32)
        with TestClient(create_app(settings, engine=engine)) as client:
            answer = client.post(
                "/api/v1/taps", json=make_tap(), headers={"Authorization": f"Bearer {token}"}
            )
            assert answer.status_code == 201
            assert answer.json()["tap"]["station"] == "till-9"
            beat = {"version": "0.1.0", "started_at": "2026-12-06T10:00:00+00:00",
                    "uptime_s": 5, "period_s": 600, "outbox_pending": 7, "outbox_dead": 2,
                    "readers_present": 1, "readers_total": 1}
            answer = client.post("/api/v1/stations/heartbeat", json=beat,
                                 headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 200, answer.text
    finally:
        engine.dispose()
    code, out, _ = _run(capsys, db_url, "stations", "list")
    assert "till-9\tonline\t" in out and "outbox 7\tdead 2\tversion 0.1.0" in out
