"""Issue 11, the smaller items: user and station commands effective within seconds,
``python -m tracker``, 0600 database files, CSV formula prefixes, no token hash in statements."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from tracker_server import running_server
from tracker_testlib import Operator, OperatorClient, StationCredentials, login_form_token, make_tap

from tracker.cli import main
from tracker.db import make_engine
from tracker.security import hash_token
from tracker.web import auth

HTML = {"accept": "text/html"}


def _cli(capsys: pytest.CaptureFixture[str], db_url: str, *args: str) -> tuple[int, str]:
    code = main(["--database-url", db_url, *args])
    return code, capsys.readouterr().out


def _signed_in(base: str, user: Operator) -> httpx.Client:
    http = httpx.Client(base_url=base, timeout=10)
    token = login_form_token(http)
    data = {"username": user.username, "password": user.password, "csrf_token": token}
    assert http.post("/login", data=data).status_code in (200, 303)
    return http


def _until(check: Any, limit: float = 5.0) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < limit, "not effective in time"
        time.sleep(0.1)
    return time.monotonic() - started


def test_users_list_disable_passwd_remove_take_effect_within_seconds(
    settings: Any, engine: Engine, db_url: str, admin_user: Operator, viewer_user: Operator,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = _cli(capsys, db_url, "--json", "users", "list")
    assert code == 0
    assert {(u["username"], u["disabled"]) for u in json.loads(out)} == {
        ("admin", False), ("viewer", False)
    }
    with running_server(settings, engine) as base:
        for command in (["disable"], ["passwd"], ["remove"]):
            http = _signed_in(base, admin_user) if command != ["remove"] else None
            if command == ["remove"]:
                http = _signed_in(base, viewer_user)
                name = "viewer"
            else:
                name = "admin"
            assert http is not None
            assert http.get("/", headers=HTML).status_code == 200
            code, out = _cli(capsys, db_url, "--json", "users", *command, name)
            assert code == 0, out
            assert _until(lambda h=http: h.get("/", headers=HTML).status_code != 200) < 3
            if command == ["disable"]:
                with engine.begin() as conn:
                    conn.execute(sa.text("UPDATE user_account SET disabled = false"))
            if command == ["passwd"]:
                password = json.loads(out)["password"]
                assert len(password) >= 8
                fresh = _signed_in(base, Operator("admin", password, admin_user.role))
                assert fresh.get("/", headers=HTML).status_code == 200
            http.close()
    code, out = _cli(capsys, db_url, "--json", "users", "list")
    assert [u["username"] for u in json.loads(out)] == ["admin"]
    assert _cli(capsys, db_url, "users", "remove", "nobody")[0] == 1


def test_stations_revoke_and_rotate_are_refused_within_the_token_cache_time(
    settings: Any, engine: Engine, db_url: str, station: StationCredentials,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with running_server(settings, engine) as base:

        def post(token: str, counter: int) -> int:
            answer = httpx.post(
                base + "/api/v1/taps", json=make_tap(counter=counter),
                headers={"Authorization": f"Bearer {token}"}, timeout=10,
            )
            return answer.status_code

        assert post(station.token, 1) == 201  # now cached for 2 s
        code, out = _cli(capsys, db_url, "--json", "stations", "rotate", "till-1")
        assert code == 0
        rotated = json.loads(out)
        assert set(rotated) == {"name", "token"} and rotated["name"] == "till-1"
        assert _until(lambda: post(station.token, 2) == 401, 3.5) < 3
        assert post(rotated["token"], 3) == 201
        code, out = _cli(capsys, db_url, "stations", "revoke", "till-1")
        assert code == 0 and rotated["token"] not in out
        assert _until(lambda: post(rotated["token"], 4) == 401, 3.5) < 3
    code, out = _cli(capsys, db_url, "stations", "rotate", "till-1")
    assert code == 0 and out.count("bcst_") == 1  # the new token, once
    assert _cli(capsys, db_url, "stations", "revoke", "nope")[0] == 1


def test_python_dash_m_tracker_runs_the_cli(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'tracker.sqlite'}"
    done = subprocess.run(
        [sys.executable, "-m", "tracker", "--database-url", url, "--json", "db", "upgrade"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["up_to_date"] is True
    for name in ("tracker.sqlite", "tracker.sqlite-wal", "tracker.sqlite-shm"):
        path = tmp_path / "new" / name
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name


def test_a_new_sqlite_database_is_created_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        engine = make_engine(f"sqlite:///{tmp_path / 'fresh.sqlite'}")
        with engine.connect() as conn:
            conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
        engine.dispose()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "fresh.sqlite").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "reason", [" =1+1", "\n=1+1", "\t=1+1", "\uff1d1+1", "=1+1", "+1", "-1", "@SUM(A1)"]
)
def test_csv_cells_that_a_spreadsheet_could_run_are_neutralised(
    reason: str, viewer_client: OperatorClient, station_token: str, client: Any
) -> None:
    body = make_tap(counter=1, outcome="refused", reason=reason)
    answer = client.post(
        "/api/v1/taps", json=body, headers={"Authorization": f"Bearer {station_token}"}
    )
    assert answer.status_code in (201, 422), answer.text
    if answer.status_code == 422:  # a control character the tracker refuses outright
        return
    exported = viewer_client.client.get("/api/v1/taps/export.csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert rows[0]["reason"] == "'" + reason


def test_statements_carry_the_token_hash_as_a_bound_parameter_only(
    db_url: str, engine: Engine, station: StationCredentials, capsys: pytest.CaptureFixture[str]
) -> None:
    """What PostgreSQL logs for a failing statement is its text: the hash must not be in it.
    The station row is locked so the lookup, the rotation and the revocation wait (and would
    fail into the log on a lock timeout); the text the server holds for them is read from
    pg_stat_activity (SQLite: the text handed to the driver)."""
    token_hash = hash_token(station.token)
    seen: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    from tracker.db import make_sessionmaker
    from tracker.services import stations

    def work() -> None:
        with make_sessionmaker(engine)() as s:
            stations.authenticate(s, token=station.token)
        with make_sessionmaker(engine)() as s:
            stations.rotate_token(s, name="till-1")
        with make_sessionmaker(engine)() as s:
            stations.revoke_token(s, name="till-1")

    if engine.dialect.name != "postgresql":
        work()
        assert seen and not any(token_hash in text for text in seen)
        return
    import psycopg

    dsn = db_url.replace("postgresql+psycopg", "postgresql")
    server_texts: list[str] = []
    with psycopg.connect(dsn) as holder:
        holder.execute("LOCK TABLE station IN ACCESS EXCLUSIVE MODE")
        worker = threading.Thread(target=work)
        worker.start()
        with psycopg.connect(dsn, autocommit=True) as watcher:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not server_texts:
                server_texts = [
                    r[0] for r in watcher.execute(
                        "SELECT query FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    )
                ]
                time.sleep(0.05)
        holder.rollback()
    worker.join(10)
    assert server_texts and not any(token_hash in text for text in server_texts)
    assert seen and not any(token_hash in text for text in seen)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT token_hash FROM station")).scalar() is None


def test_login_page_cookie_is_not_a_session(client: Any, admin_user: Operator) -> None:
    """The signed login-form cookie cannot be replayed as a session cookie."""
    login_form_token(client)
    client.cookies.set(auth.SESSION_COOKIE, client.cookies[auth.LOGIN_CSRF_COOKIE])
    assert client.get("/", headers=HTML, follow_redirects=False).status_code == 303
