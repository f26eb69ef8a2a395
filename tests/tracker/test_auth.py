"""Operator sign-in: cookies, roles, CSRF, rate limiting (through the real app)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tracker_testlib import Operator, login

from tracker.services import users as user_service
from tracker.web import auth

HTML = {"accept": "text/html"}
UID = "04A1B2C3D4E5F6"


def _login_form(client: TestClient) -> str:
    page = client.get("/login")
    assert page.status_code == 200
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, "the login form must carry a CSRF token"
    return match.group(1)


def _sign_in(client: TestClient, user: Operator, password: str | None = None) -> Any:
    token = _login_form(client)
    return client.post(
        "/login",
        data={
            "username": user.username,
            "password": password or user.password,
            "csrf_token": token,
        },
        follow_redirects=False,
    )


def _session_cookie_header(response: Any) -> str:
    headers = response.headers.get_list("set-cookie")
    found = [h for h in headers if h.startswith(auth.SESSION_COOKIE + "=")]
    assert found, headers
    return found[0]


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """Sign-in uses no backend-specific SQL, so SQLite alone (overrides the two-backend one)."""
    return f"sqlite:///{tmp_path / 'tracker.sqlite'}"


def test_pages_send_anonymous_browsers_to_login_and_back(
    client: TestClient,
    admin_user: Operator,
) -> None:
    answer = client.get("/cards?q=abc", headers=HTML, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Fcards%3Fq%3Dabc"
    token = _login_form(client)
    signed_in = client.post(
        "/login",
        data={
            "username": "admin",
            "password": admin_user.password,
            "csrf_token": token,
            "next": "/cards?q=abc",
        },
        follow_redirects=False,
    )
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/cards?q=abc"
    assert client.get("/cards?q=abc", headers=HTML).status_code == 200


def test_anonymous_non_browser_callers_get_401(
    client: TestClient,
) -> None:
    assert client.get("/events", headers={"accept": "text/event-stream"}).status_code == 401
    assert client.get("/summary.json").status_code == 401


def test_session_cookie_is_httponly_lax_and_signed_with_hmac_sha256(
    client: TestClient,
    admin_user: Operator,
    settings: Any,
) -> None:
    answer = _sign_in(client, admin_user)
    assert answer.status_code == 303
    header = _session_cookie_header(answer)
    lowered = header.lower()
    assert "httponly" in lowered
    assert "samesite=lax" in lowered
    assert "secure" not in lowered  # plain http: a Secure cookie would never come back
    value = header.split(";", 1)[0].split("=", 1)[1].strip('"')
    body, mac = value.split(".")
    # Recompute the MAC independently with hashlib/hmac and the configured secret.
    expected = hmac.new(
        settings.secret_key.encode(), b"tracker-session:" + body.encode(), hashlib.sha256
    ).digest()
    assert base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4)) == expected
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    assert payload["exp"] > time.time()
    assert "password" not in json.dumps(payload).lower()
    assert admin_user.password not in value


def test_cookie_is_secure_over_https(
    app: Any,
    admin_user: Operator,
) -> None:
    with TestClient(app, base_url="https://tracker.example") as c:
        answer = _sign_in(c, admin_user)
        assert answer.status_code == 303
        assert "secure" in _session_cookie_header(answer).lower()


def test_wrong_password_is_refused_without_saying_which_part_was_wrong(
    client: TestClient,
    admin_user: Operator,
) -> None:
    wrong_pw = _sign_in(client, admin_user, password="not-the-password")
    unknown = _sign_in(client, Operator("nobody", "whatever1", admin_user.role))
    assert wrong_pw.status_code == unknown.status_code == 401
    assert "Wrong username or password" in wrong_pw.text
    assert "Wrong username or password" in unknown.text
    assert auth.SESSION_COOKIE not in client.cookies


def test_login_without_the_form_token_is_refused(
    client: TestClient,
    admin_user: Operator,
) -> None:
    _login_form(client)
    answer = client.post(
        "/login",
        data={"username": "admin", "password": admin_user.password, "csrf_token": "forged"},
        follow_redirects=False,
    )
    assert answer.status_code == 403
    assert auth.SESSION_COOKIE not in client.cookies


@pytest.mark.parametrize("cookie", ["garbage", "a.b", "eyJ1aWQiOjF9.AAAA"])
def test_forged_cookies_are_ignored(
    client: TestClient,
    cookie: str,
) -> None:
    client.cookies.set(auth.SESSION_COOKIE, cookie)
    assert client.get("/", headers=HTML, follow_redirects=False).status_code == 303


def test_tampered_and_expired_sessions_are_ignored(
    client: TestClient,
    admin_user: Operator,
    viewer_user: Operator,
    settings: Any,
) -> None:
    assert _sign_in(client, viewer_user).status_code == 303
    value = client.cookies[auth.SESSION_COOKIE]
    body, mac = value.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    # Become user 1 (the admin) by editing the body, keeping the old MAC.
    payload["uid"] = 1 if payload["uid"] != 1 else 2
    forged_body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    client.cookies.set(auth.SESSION_COOKIE, f"{forged_body}.{mac}")
    assert client.get("/", headers=HTML, follow_redirects=False).status_code == 303
    # A correctly signed but expired session is refused too.
    secret = settings.secret_key.encode()
    expired = dict(payload, exp=int(time.time()) - 1)
    client.cookies.set(auth.SESSION_COOKIE, auth.sign(secret, expired))
    assert client.get("/", headers=HTML, follow_redirects=False).status_code == 303


def test_changing_the_password_ends_existing_sessions(
    client: TestClient,
    admin_user: Operator,
    session: Any,
) -> None:
    login(client, admin_user)
    assert client.get("/", headers=HTML).status_code == 200
    user_service.set_password(session, username="admin", password="a-new-password")
    assert client.get("/", headers=HTML, follow_redirects=False).status_code == 303


def test_open_redirects_are_refused(
    client: TestClient,
    admin_user: Operator,
) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        client.cookies.clear()
        token = _login_form(client)
        answer = client.post(
            "/login",
            data={
                "username": "admin",
                "password": admin_user.password,
                "csrf_token": token,
                "next": target,
            },
            follow_redirects=False,
        )
        assert answer.headers["location"] == "/"


def test_five_failures_lock_the_username_for_that_address(
    client: TestClient,
    admin_user: Operator,
    viewer_user: Operator,
) -> None:
    for _ in range(5):
        assert _sign_in(client, admin_user, password="wrong-password").status_code == 401
    locked = _sign_in(client, admin_user)  # even the right password waits now
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) > 0
    assert auth.SESSION_COOKIE not in client.cookies
    # Another user from the same address is not affected.
    assert _sign_in(client, viewer_user).status_code == 303


def test_viewers_cannot_use_admin_forms(
    viewer_client: Any,
    client: TestClient,
    station_token: str,
) -> None:
    from tracker_testlib import make_tap

    client.post(
        "/api/v1/taps", json=make_tap(UID, 1), headers={"Authorization": f"Bearer {station_token}"}
    )
    c = viewer_client.client
    page = c.get(f"/cards/{UID}", headers=HTML)
    assert page.status_code == 200
    assert "/alias" not in page.text  # no admin forms shown
    answer = c.post(f"/cards/{UID}/alias", data={"alias": "x", "csrf_token": viewer_client.csrf})
    assert answer.status_code == 403
    assert "admin" in answer.text


def test_admin_forms_need_the_session_csrf_token(
    admin_client: Any,
    station_token: str,
) -> None:
    from tracker_testlib import make_tap

    c = admin_client.client
    c.post(
        "/api/v1/taps", json=make_tap(UID, 1), headers={"Authorization": f"Bearer {station_token}"}
    )
    for token in (None, "", "forged-token"):
        data = {"alias": "Till float"}
        if token is not None:
            data["csrf_token"] = token
        answer = c.post(f"/cards/{UID}/alias", data=data, follow_redirects=False)
        assert answer.status_code == 403, token
    assert "Till float" not in c.get(f"/cards/{UID}", headers=HTML).text
    ok = c.post(
        f"/cards/{UID}/alias",
        data={"alias": "Till float", "csrf_token": admin_client.csrf},
        follow_redirects=False,
    )
    assert ok.status_code == 303
    assert "Till float" in c.get(f"/cards/{UID}", headers=HTML).text


def test_logout_needs_csrf_and_ends_the_session(
    admin_client: Any,
) -> None:
    c = admin_client.client
    assert c.post("/logout", data={"csrf_token": "nope"}).status_code == 403
    assert c.get("/", headers=HTML, follow_redirects=False).status_code == 200
    answer = c.post("/logout", data={"csrf_token": admin_client.csrf}, follow_redirects=False)
    assert answer.status_code == 303
    assert c.get("/", headers=HTML, follow_redirects=False).status_code == 303
