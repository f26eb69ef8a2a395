"""The sign-in limit: counted in the database before the password is checked, per user and per
address, shared by tracker processes, and deaf to X-Forwarded-For unless a proxy is trusted."""

from __future__ import annotations

import concurrent.futures
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi.testclient import TestClient
from procs import tracker_process
from sqlalchemy import Engine
from tracker_server import running_server
from tracker_testlib import Operator, count_rows, login_form_token

from tracker.db import make_sessionmaker
from tracker.web.app import create_app


def _try(client: Any, user: str, password: str, **headers: str) -> int:
    token = login_form_token(client)
    answer = client.post(
        "/login",
        data={"username": user, "password": password, "csrf_token": token},
        headers=headers,
        follow_redirects=False,
    )
    return int(answer.status_code)


def test_the_window_ends_and_a_success_clears_the_count(engine: Engine) -> None:
    from tracker.services.logins import LoginAttempts, LoginLimits

    now = [datetime(2026, 12, 2, 12, 0, tzinfo=UTC)]
    limiter = LoginAttempts(
        make_sessionmaker(engine), LoginLimits(per_user_address=3), clock=lambda: now[0]
    )
    assert [limiter.attempt("10.0.0.1", "Admin") for _ in range(3)] == [0, 0, 0]
    assert limiter.attempt("10.0.0.1", "admin") > 0  # names compare case-insensitively
    assert limiter.attempt("10.0.0.2", "admin") == 0
    now[0] += timedelta(seconds=301)
    assert limiter.attempt("10.0.0.1", "admin") == 0
    limiter.succeeded("10.0.0.1", "admin")
    assert [limiter.attempt("10.0.0.1", "admin") for _ in range(3)] == [0, 0, 0]
    # Old rows are deleted as they age; refused attempts leave no row.
    now[0] += timedelta(seconds=301)
    limiter.attempt("10.0.0.3", "x")
    assert count_rows(engine, "login_attempt") == 1


def test_forty_parallel_wrong_passwords_get_at_most_five_checks(
    settings: Any, engine: Engine, admin_user: Operator
) -> None:
    with running_server(settings, engine) as base:

        def guess(_: int) -> int:
            with httpx.Client(base_url=base, timeout=60) as http:
                return _try(http, "admin", "wrong-" + secrets.token_hex(4))

        with concurrent.futures.ThreadPoolExecutor(40) as pool:
            answers = list(pool.map(guess, range(40)))
    assert answers.count(401) <= 5, answers  # 401: the password was really checked
    # The rest were refused before any check: 429 (locked out), or on SQLite, when 40 writers
    # queue for its one write lock on a loaded machine, 503 with Retry-After (try again).
    refused = {429, 503} if settings.is_sqlite else {429}
    assert all(a == 401 or a in refused for a in answers), answers


def test_lockouts_survive_a_restart_and_spraying_other_names(
    settings: Any, engine: Engine, admin_user: Operator
) -> None:
    with TestClient(create_app(settings, engine=engine)) as first:
        for _ in range(5):
            assert _try(first, "admin", "wrong-password") == 401
    # Other names from other addresses (the old in-memory limiter evicted its oldest entry
    # past 10,000 names) cannot push the lockout out.
    from tracker.services.logins import LoginAttempts

    sprayer = LoginAttempts(make_sessionmaker(engine))
    for n in range(300):
        sprayer.attempt(f"10.9.{n // 250}.{n % 250}", f"user{n}")
    with TestClient(create_app(settings, engine=engine)) as restarted:
        assert _try(restarted, "admin", admin_user.password) == 429


def test_x_forwarded_for_is_ignored_unless_the_proxy_is_trusted(
    db_url: str, engine: Engine, admin_user: Operator
) -> None:
    secret = "s" * 40
    with tracker_process(db_url, secret) as base, httpx.Client(base_url=base) as http:
        codes = [
            _try(http, "admin", "wrong-password", **{"X-Forwarded-For": f"10.0.0.{n}"})
            for n in range(6)
        ]
    assert codes == [401] * 5 + [429]


def test_a_trusted_proxy_is_believed_and_the_user_is_locked_from_any_address(
    db_url: str, engine: Engine, admin_user: Operator
) -> None:
    secret = "s" * 40
    with (
        tracker_process(db_url, secret, "--forwarded-allow-ips", "127.0.0.1") as base,
        httpx.Client(base_url=base) as http,
    ):
        # Per address: five from one client address, then that address waits...
        same = [
            _try(http, "admin", "nope-nope", **{"X-Forwarded-For": "10.0.0.1"}) for _ in "123456"
        ]
        # ...but the proxy's other clients are separate addresses, up to the per-user limit.
        others = [
            _try(http, "admin", "nope-nope", **{"X-Forwarded-For": f"10.0.1.{n}"}) for n in range(6)
        ]
        right = _try(http, "admin", admin_user.password, **{"X-Forwarded-For": "10.0.2.1"})
    assert same == [401] * 5 + [429]
    assert others == [401] * 5 + [429]  # 10 failures for "admin" from anywhere
    assert right == 429
