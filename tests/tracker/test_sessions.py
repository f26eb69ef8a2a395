"""Sessions can be ended: logout, password/role change, disabling and removal, in every tracker
process and under open event streams; the login form token is bound to a signed cookie."""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

import httpx
from fastapi.testclient import TestClient
from procs import tracker_process
from sqlalchemy import Engine
from tracker_server import running_server
from tracker_testlib import Operator, login, login_form_token

from tracker.db import make_sessionmaker
from tracker.models import Role
from tracker.services import users as user_service
from tracker.web import auth

HTML = {"accept": "text/html"}


def _page_status(client: Any) -> int:
    return int(client.get("/", headers=HTML, follow_redirects=False).status_code)


def test_a_cookie_copied_before_logout_is_refused_after_it(
    app: Any, admin_user: Operator
) -> None:
    with TestClient(app) as browser, TestClient(app) as thief:
        csrf = login(browser, admin_user)
        thief.cookies.set(auth.SESSION_COOKIE, browser.cookies[auth.SESSION_COOKIE])
        assert _page_status(thief) == 200
        browser.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
        assert _page_status(thief) == 303
        assert _page_status(browser) == 303


def test_password_role_disable_and_removal_end_sessions(
    app: Any, engine: Engine, admin_user: Operator
) -> None:
    changes = [
        lambda s: user_service.set_password(s, username="admin", password="another-pw-1"),
        lambda s: user_service.set_role(s, username="admin", role=Role.viewer),
        lambda s: user_service.set_disabled(s, username="admin"),
        lambda s: user_service.remove_user(s, username="admin"),
    ]
    for change in changes:
        with make_sessionmaker(engine)() as s:
            user_service.set_disabled(s, username="admin", disabled=False)
            user_service.set_password(s, username="admin", password=admin_user.password)
        with TestClient(app) as c:
            login(c, admin_user)
            assert _page_status(c) == 200
            with make_sessionmaker(engine)() as s:
                change(s)
            assert _page_status(c) == 303, change
    with TestClient(app) as c:  # removed: cannot sign in again either
        token = login_form_token(c)
        answer = c.post(
            "/login",
            data={"username": "admin", "password": admin_user.password, "csrf_token": token},
        )
        assert answer.status_code == 401


def test_a_disabled_user_cannot_sign_in(app: Any, engine: Engine, admin_user: Operator) -> None:
    with make_sessionmaker(engine)() as s:
        user_service.set_disabled(s, username="admin")
    with TestClient(app) as c:
        token = login_form_token(c)
        answer = c.post(
            "/login",
            data={"username": "admin", "password": admin_user.password, "csrf_token": token},
            follow_redirects=False,
        )
        assert answer.status_code == 401


def test_login_needs_the_token_of_a_cookie_this_server_signed(
    client: TestClient, admin_user: Operator
) -> None:
    # A plain double submit: a cookie the attacker chose and the same value in the form.
    tossed = secrets.token_urlsafe(16)
    client.cookies.set(auth.LOGIN_CSRF_COOKIE, tossed)
    data = {"username": "admin", "password": admin_user.password, "csrf_token": tossed}
    assert client.post("/login", data=data, follow_redirects=False).status_code == 403
    # The server's own cookie with a token that is not derived from it: refused too.
    login_form_token(client)
    assert client.post("/login", data=data, follow_redirects=False).status_code == 403
    data["csrf_token"] = login_form_token(client)
    assert client.post("/login", data=data, follow_redirects=False).status_code == 303


def _sign_in(base: str, user: Operator) -> httpx.Client:
    http = httpx.Client(base_url=base, timeout=httpx.Timeout(10.0))
    token = login_form_token(http)
    answer = http.post(
        "/login", data={"username": user.username, "password": user.password, "csrf_token": token}
    )
    assert answer.status_code in (200, 303), answer.text
    return http


def _stream_closes_after(http: httpx.Client, action: Any) -> float:
    """Open /events, run ``action``, return seconds until the server ended the stream."""
    ended = threading.Event()
    with http.stream("GET", "/events", headers={"accept": "text/event-stream"}) as answer:
        assert answer.status_code == 200
        lines = answer.iter_lines()
        for line in lines:
            if line.startswith(": connected"):
                break
        started = time.monotonic()
        action()
        timer = threading.Timer(15, ended.set)
        timer.start()
        try:
            for _ in lines:
                assert not ended.is_set(), "the stream stayed open"
        finally:
            timer.cancel()
    return time.monotonic() - started


def test_an_open_event_stream_ends_within_seconds_when_its_user_is_removed(
    settings: Any, engine: Engine, admin_user: Operator
) -> None:
    with running_server(settings, engine) as base:
        http = _sign_in(base, admin_user)

        def remove() -> None:
            with make_sessionmaker(engine)() as s:
                user_service.remove_user(s, username="admin")

        assert _stream_closes_after(http, remove) < 6
        http.close()


def test_two_tracker_processes_share_lockouts_and_revocations(
    db_url: str, engine: Engine, admin_user: Operator, viewer_user: Operator
) -> None:
    secret = "shared-" + "k" * 40
    with tracker_process(db_url, secret) as a, tracker_process(db_url, secret) as b:
        # Lockout: five failures on A, the sixth try (right password) on B waits.
        with httpx.Client(base_url=a) as on_a:
            for _ in range(5):
                token = login_form_token(on_a)
                wrong = {"username": "admin", "password": "wrong-pw", "csrf_token": token}
                assert on_a.post("/login", data=wrong).status_code == 401
        with httpx.Client(base_url=b) as on_b:
            token = login_form_token(on_b)
            right = {"username": "admin", "password": admin_user.password, "csrf_token": token}
            assert on_b.post("/login", data=right).status_code == 429
        # Revocation: a viewer signed in on A, its cookie used on B, logged out on A.
        viewer = _sign_in(a, viewer_user)
        cookie = viewer.cookies[auth.SESSION_COOKIE]
        with httpx.Client(base_url=b, cookies={auth.SESSION_COOKIE: cookie}) as copy_on_b:
            assert _page_status(copy_on_b) == 200
            page = viewer.get("/logout", headers=HTML)
            csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            assert viewer.post("/logout", data={"csrf_token": csrf}).status_code in (200, 303)
            assert _page_status(copy_on_b) == 303
        # A stream open on B ends when the user's password is changed elsewhere.
        viewer = _sign_in(a, viewer_user)
        cookie = viewer.cookies[auth.SESSION_COOKIE]
        with httpx.Client(base_url=b, cookies={auth.SESSION_COOKIE: cookie}) as stream_on_b:

            def new_password() -> None:
                with make_sessionmaker(engine)() as s:
                    user_service.set_password(s, username="viewer", password="brand-new-pw")

            assert _stream_closes_after(stream_on_b, new_password) < 6
        viewer.close()
