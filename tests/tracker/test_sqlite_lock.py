"""A write lock held elsewhere never freezes the tracker (issue 11, item 3; SQLite only).

Another connection holds SQLite's write lock (a backup, a second process, a long export).
Meanwhile a station's tap waits a short time and answers 503 with ``Retry-After`` (the station
retries), and the login page and ``/api/v1/stats`` keep answering at once: the waiting write
runs off the event loop. Before the fix the tap ran on the loop, so every route stood still
for the busy timeout (10 s) and the tap then got a 500.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from tracker_server import running_server
from tracker_testlib import (
    Operator,
    count_rows,
    login_form_token,
    make_station,
    make_tap,
    make_user,
)

from tracker import migrations
from tracker.db import make_engine
from tracker.models import Role
from tracker.settings import load_settings


def _login(http: httpx.Client, user: Operator) -> None:
    from tracker.web import auth

    form_token = login_form_token(http)
    answer = http.post(
        "/login",
        data={"username": user.username, "password": user.password, auth.CSRF_FIELD: form_token},
    )
    assert answer.status_code in (200, 303), answer.text
    assert http.cookies.get(auth.SESSION_COOKIE)


def test_a_held_write_lock_gets_taps_a_503_and_leaves_other_routes_answering(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tracker.sqlite"
    url = f"sqlite:///{path}"
    settings = load_settings(
        env={}, database_url=url, secret_key=secrets.token_hex(16), persist_secret=False
    )
    engine = make_engine(settings)  # the default busy timeout, as `tracker serve` has it
    migrations.upgrade(engine)
    station = make_station(engine, "till-1")
    viewer = make_user(engine, "viewer", Role.viewer)
    with running_server(settings, engine) as base, httpx.Client(base_url=base) as http:
        _login(http, viewer)
        first = http.post("/api/v1/taps", json=make_tap(counter=1), headers=station.headers)
        assert first.status_code == 201, first.text

        holder = sqlite3.connect(path, timeout=0)
        holder.execute("BEGIN IMMEDIATE")  # the write lock, held by someone else
        try:
            result: dict[str, Any] = {}

            def post_tap() -> None:
                started = time.monotonic()
                with httpx.Client(base_url=base, timeout=30) as own:
                    result["answer"] = own.post(
                        "/api/v1/taps", json=make_tap(counter=2), headers=station.headers
                    )
                result["seconds"] = time.monotonic() - started

            tapping = threading.Thread(target=post_tap)
            tapping.start()
            time.sleep(0.3)  # the tap is now waiting for the lock
            for page in ("/login", "/api/v1/stats", "/api/v1/taps"):
                started = time.monotonic()
                # The sign-in page as a new visitor sees it; the rest signed in.
                answer = (
                    httpx.get(base + page, timeout=5)
                    if page == "/login"
                    else http.get(page, timeout=5)
                )
                assert answer.status_code == 200, (page, answer.status_code)
                assert time.monotonic() - started < 1.0, f"{page} waited for the lock"
            assert tapping.is_alive(), "the tap did not wait for the lock at all"
            tapping.join(timeout=20)
            answer = result["answer"]
            assert answer.status_code == 503, answer.text
            assert int(answer.headers["retry-after"]) >= 1
            assert answer.json()["detail"]["reason"] == "database_busy"
            assert result["seconds"] < 5
        finally:
            holder.rollback()
            holder.close()
        # Once the lock is free the station's retry is stored.
        again = http.post("/api/v1/taps", json=make_tap(counter=2), headers=station.headers)
        assert again.status_code == 201, again.text
        assert count_rows(engine, "tap") == 2
    engine.dispose()
