"""Operator login: signed session cookies, roles, CSRF tokens and login rate limiting.

Why signed cookies and no session table: several tracker processes behind a load balancer must
all accept the same session without sharing memory; an HMAC-SHA256 over the cookie body with
``settings.secret_key`` gives that. The cookie carries a fingerprint of the user's password hash,
and every request re-reads the user, so a password change, a role change or a deleted user
ends the old sessions at once.

CSRF: a signed-in session carries a random token that every form posts back (session-bound
token); the login form, which has no session yet, uses a double-submit cookie. Both are checked
on every POST by :func:`check_csrf`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response

from tracker.web.templating import render

log = logging.getLogger(__name__)

SESSION_COOKIE = "tracker_session"
LOGIN_CSRF_COOKIE = "tracker_login_csrf"
CSRF_FIELD = "csrf_token"
ROLES = ("viewer", "admin")
DEFAULT_SESSION_TTL = 12 * 3600


class CSRFError(HTTPException):
    """The form did not carry this session's token: reload the page and submit again."""

    def __init__(self) -> None:
        super().__init__(
            status_code=status.HTTP_403_FORBIDDEN,
            detail="form expired or forged (CSRF check failed); reload the page and try again",
        )


@dataclass(frozen=True)
class CurrentUser:
    """Who is signed in. ``csrf`` is the token this session's forms must post back."""

    id: int
    username: str
    role: str
    csrf: str
    timezone: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


# --- signed tokens ---------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def sign(secret: bytes, payload: dict[str, Any]) -> str:
    """``body.mac`` with body = base64url(JSON) and mac = HMAC-SHA256(secret, purpose || body)."""
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    mac = hmac.new(secret, b"tracker-session:" + body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def unsign(secret: bytes, token: str, *, now: float | None = None) -> dict[str, Any] | None:
    """The payload of a valid, unexpired token, else ``None``; never says which check failed."""
    try:
        body, mac = token.split(".", 1)
        expected = hmac.new(secret, b"tracker-session:" + body.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(mac)):
            return None
        payload = json.loads(_unb64(body))
    except (ValueError, TypeError, UnicodeError):
        return None
    if not isinstance(payload, dict):
        return None
    exp = payload.get("exp")
    if not isinstance(exp, int | float) or exp < (time.time() if now is None else now):
        return None
    return payload


def _secret(request: Request) -> bytes:
    key = request.app.state.settings.secret_key
    if hasattr(key, "get_secret_value"):
        key = key.get_secret_value()
    if not key:
        raise RuntimeError("settings.secret_key is empty; set TRACKER_SECRET_KEY")
    return str(key).encode()


def _ttl(request: Request) -> int:
    return int(getattr(request.app.state.settings, "session_max_age_s", DEFAULT_SESSION_TTL))


def _fingerprint(secret: bytes, password_hash: str) -> str:
    """Short MAC of the stored hash: changes when the password does, reveals nothing about it."""
    return _b64(hmac.new(secret, b"pw:" + password_hash.encode(), hashlib.sha256).digest()[:12])


# --- users (through the models) ---------------------------------------------------------------


def _find_user(request: Request, *, user_id: int | None = None, username: str | None = None) -> Any:
    """Load a User by id or username; ``None`` when absent or disabled."""
    from sqlmodel import select

    from tracker.models import User

    with request.app.state.sessionmaker() as session:
        if user_id is not None:
            user = session.get(User, user_id)
        else:
            user = session.exec(select(User).where(User.username == username)).first()
        if user is None or getattr(user, "disabled", False):
            return None
        session.expunge(user)
        return user


def _role_name(user: Any) -> str:
    role = user.role
    return str(getattr(role, "value", role))


def current_user(request: Request) -> CurrentUser | None:
    """The signed-in operator, or ``None``. Cached on the request (several dependencies ask)."""
    cached = getattr(request.state, "tracker_user", False)
    if cached is None or isinstance(cached, CurrentUser):
        return cached
    user = _current_user_uncached(request)
    request.state.tracker_user = user
    return user


def _current_user_uncached(request: Request) -> CurrentUser | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    secret = _secret(request)
    payload = unsign(secret, token)
    if payload is None:
        return None
    try:
        user = _find_user(request, user_id=int(payload["uid"]))
    except (KeyError, ValueError, TypeError):
        return None
    if user is None or not hmac.compare_digest(
        _fingerprint(secret, user.password_hash), str(payload.get("pw", ""))
    ):
        return None
    role = _role_name(user)
    if role not in ROLES:
        return None
    return CurrentUser(
        id=user.id,
        username=user.username,
        role=role,
        csrf=str(payload["csrf"]),
        timezone=getattr(user, "timezone", None),
    )


# --- dependencies ------------------------------------------------------------------------------


def _is_page_request(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return request.method == "GET" and "text/html" in accept


def require_viewer(request: Request) -> CurrentUser:
    """Any signed-in operator. Browsers asking for a page go to /login; others get 401."""
    user = current_user(request)
    if user is not None:
        return user
    if _is_page_request(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise HTTPException(
            status_code=status.HTTP_303_SEE_OTHER,
            headers={"Location": f"/login?next={quote(target, safe='')}"},
        )
    raise HTTPException(status_code=status.HTTP_401_UNAUTHORIZED, detail="sign in at /login first")


def require_admin(request: Request) -> CurrentUser:
    """An admin (aliases, block lists, notes, users, stations); a viewer gets 403."""
    user = require_viewer(request)
    if not user.is_admin:
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail="this needs the admin role; ask an admin to change it",
        )
    return user


async def check_csrf(request: Request) -> None:
    """Refuse a POST whose form lacks the session's (or the login page's) CSRF token."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    if not isinstance(sent, str) or not sent:
        raise CSRFError()
    user = current_user(request)
    expected = user.csrf if user is not None else request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CSRFError()


Viewer = Annotated[CurrentUser, Depends(require_viewer)]
Admin = Annotated[CurrentUser, Depends(require_admin)]
CSRFChecked = Depends(check_csrf)


# --- login rate limiting -----------------------------------------------------------------------


class LoginLimiter:
    """At most ``max_failures`` failed logins per (client IP, username) in ``window`` seconds.

    Per process: behind a load balancer each process counts on its own, so the effective limit
    is ``max_failures`` times the process count - still enough to stop online guessing.
    """

    def __init__(
        self,
        *,
        max_failures: int = 5,
        window: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self._clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str]) -> deque[float]:
        now = self._clock()
        failures = self._failures.setdefault(key, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures

    def retry_after(self, ip: str, username: str) -> int:
        """Seconds until another attempt is allowed; 0 when allowed now."""
        key = (ip, username.strip().lower())
        with self._lock:
            failures = self._recent(key)
            if len(failures) < self.max_failures:
                if not failures:
                    self._failures.pop(key, None)
                return 0
            return max(1, int(failures[0] + self.window - self._clock()) + 1)

    def failed(self, ip: str, username: str) -> None:
        key = (ip, username.strip().lower())
        with self._lock:
            self._recent(key).append(self._clock())
            if len(self._failures) > 10_000:  # bound memory under a spray of usernames
                oldest = next(iter(self._failures))
                self._failures.pop(oldest, None)

    def succeeded(self, ip: str, username: str) -> None:
        with self._lock:
            self._failures.pop((ip, username.strip().lower()), None)


def _limiter(request: Request) -> LoginLimiter:
    state = request.app.state
    limiter = getattr(state, "login_limiter", None)
    if limiter is None:
        limiter = LoginLimiter()
        state.login_limiter = limiter
    return limiter  # type: ignore[no-any-return]


# --- cookies -----------------------------------------------------------------------------------


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/",
    )


def issue_session(request: Request, response: Response, user: Any) -> None:
    """Sign the user in on ``response``."""
    secret = _secret(request)
    ttl = _ttl(request)
    payload = {
        "uid": user.id,
        "pw": _fingerprint(secret, user.password_hash),
        "csrf": secrets.token_urlsafe(24),
        "exp": int(time.time()) + ttl,
    }
    _set_cookie(request, response, SESSION_COOKIE, sign(secret, payload), ttl)


def _safe_next(target: str | None) -> str:
    """Only same-site paths: ``//evil.example`` or ``https://...`` would be an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


# --- routes ------------------------------------------------------------------------------------

router = APIRouter(tags=["auth"])


def _login_page(
    request: Request, *, error: str = "", status_code: int = 200, username: str = ""
) -> Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        {
            "title": "Sign in",
            "error": error,
            "login_csrf": token,
            "next": _safe_next(request.query_params.get("next")),
            "username": username,
        },
        status_code=status_code,
    )
    _set_cookie(request, response, LOGIN_CSRF_COOKIE, token, 3600)
    return response


@router.get("/login", include_in_schema=False)
def login_form(request: Request) -> Response:
    if current_user(request) is not None:
        return RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
    return _login_page(request)


@router.post("/login", include_in_schema=False)
def login(
    request: Request,
    username: Annotated[str, Form(max_length=200)],
    password: Annotated[str, Form(max_length=1000)],
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD)] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(csrf_token.encode(), expected.encode()):
        return _login_page(
            request, error="The form expired; please sign in again.", status_code=403
        )
    ip = request.client.host if request.client else "unknown"
    limiter = _limiter(request)
    wait = limiter.retry_after(ip, username)
    if wait:
        log.warning("login rate limit hit for a user from %s", ip)
        response = _login_page(
            request,
            error=f"Too many failed sign-ins. Try again in {wait} seconds.",
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            username=username,
        )
        response.headers["Retry-After"] = str(wait)
        return response
    user = _find_user(request, username=username.strip())
    from tracker.security import verify_password

    # Verify against a dummy hash when the user is unknown, so timing does not reveal names.
    stored = user.password_hash if user is not None else _dummy_hash()
    ok = verify_password(password, stored) and user is not None and _role_name(user) in ROLES
    if not ok:
        limiter.failed(ip, username)
        log.info("failed sign-in from %s", ip)
        return _login_page(
            request, error="Wrong username or password.", status_code=401, username=username
        )
    limiter.succeeded(ip, username)
    log.info("user %s signed in from %s", user.username, ip)
    response = RedirectResponse(_safe_next(next), status_code=status.HTTP_303_SEE_OTHER)
    issue_session(request, response, user)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
    return response


@router.get("/logout", include_in_schema=False)
def logout_form(request: Request) -> Response:
    user = current_user(request)
    if user is None:
        return RedirectResponse("/login", status_code=303)
    return render(request, "logout.html", {"title": "Sign out"}, user=user)


@router.post("/logout", include_in_schema=False, dependencies=[CSRFChecked])
def logout(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@functools.cache
def _dummy_hash() -> str:
    from tracker.security import hash_password

    return hash_password(secrets.token_urlsafe(16))
