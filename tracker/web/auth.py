"""Operator login: signed session cookies backed by a session table, roles, CSRF tokens and
login rate limiting kept in the database.

Sessions: the cookie is signed (HMAC-SHA256 with ``settings.secret_key``) and names a session
row (see :mod:`tracker.services.sessions`); every request re-reads the row and the user, so
logout, a password or role change, disabling or removing the user end the session at once in
every tracker process sharing the database, and a copied cookie stops working after logout.

CSRF: a signed-in session carries a random token that every form posts back (session-bound
token). The login form has no session yet: its cookie is a *signed* random nonce and the form
token is an HMAC of that nonce, so a cookie tossed in by someone else (a sibling subdomain, a
man in the middle on plain http) is refused unless this server made it.

Rate limiting: :class:`tracker.services.logins.LoginAttempts` counts each attempt in the
database before the password is checked. The client address is the TCP peer unless
``tracker serve --forwarded-allow-ips`` names trusted proxies (then uvicorn rewrites it from
``X-Forwarded-For``); by default no forwarded header is believed.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import secrets
import time
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
    #: Signed in with an API token (``Authorization: Bearer bcop_…``): no cookie, so no
    #: cross-site request can carry it and the CSRF check does not apply.
    via_token: bool = False

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


# --- signed tokens ---------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


SESSION_PURPOSE = "tracker-session"
LOGIN_CSRF_PURPOSE = "tracker-login-csrf"


def sign(secret: bytes, payload: dict[str, Any], *, purpose: str = SESSION_PURPOSE) -> str:
    """``body.mac`` with body = base64url(JSON) and mac = HMAC-SHA256(secret, purpose:body).
    The purpose keeps a token made for one use (the login form) from passing as another."""
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    mac = hmac.new(secret, purpose.encode() + b":" + body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def unsign(
    secret: bytes, token: str, *, now: float | None = None, purpose: str = SESSION_PURPOSE
) -> dict[str, Any] | None:
    """The payload of a valid, unexpired token, else ``None``; never says which check failed."""
    try:
        body, mac = token.split(".", 1)
        expected = hmac.new(
            secret, purpose.encode() + b":" + body.encode(), hashlib.sha256
        ).digest()
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


def _token_user(request: Request) -> CurrentUser | None:
    """The operator whose API token came as ``Authorization: Bearer bcop_…``, if any."""
    from tracker.services import tokens

    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(tokens.OPERATOR_TOKEN_PREFIX):
        return None
    with request.app.state.sessionmaker() as session:
        found = tokens.authenticate(session, token)
    if found is None or found[2] not in ROLES:
        return None
    return CurrentUser(id=found[0], username=found[1], role=found[2], csrf="", via_token=True)


def _current_user_uncached(request: Request) -> CurrentUser | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return _token_user(request)
    secret = _secret(request)
    payload = unsign(secret, token)
    if payload is None:
        return None
    try:
        uid, sid, csrf = int(payload["uid"]), str(payload["sid"]), str(payload["csrf"])
    except (KeyError, ValueError, TypeError):
        return None
    from tracker.services import sessions

    with request.app.state.sessionmaker() as session:
        user = sessions.user_of(session, sid=sid, user_id=uid)
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
        csrf=csrf,
        timezone=getattr(user, "timezone", None),
    )


def still_signed_in(request: Request) -> bool:
    """Re-check the request's session now (an open event stream asks every few seconds)."""
    return _current_user_uncached(request) is not None


def _session_id(request: Request) -> str | None:
    payload = unsign(_secret(request), request.cookies.get(SESSION_COOKIE, ""))
    sid = payload.get("sid") if payload else None
    return sid if isinstance(sid, str) else None


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
    expected = user.csrf if user is not None else _login_form_token(request)
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CSRFError()


Viewer = Annotated[CurrentUser, Depends(require_viewer)]
Admin = Annotated[CurrentUser, Depends(require_admin)]
CSRFChecked = Depends(check_csrf)


# --- login rate limiting -----------------------------------------------------------------------


def _limiter(request: Request) -> Any:
    """The app's :class:`~tracker.services.logins.LoginAttempts` (built on first use)."""
    from tracker.services.logins import LoginAttempts, LoginLimits

    state = request.app.state
    limiter = getattr(state, "login_limiter", None)
    if limiter is None:
        settings = state.settings
        limits = LoginLimits(
            per_user_address=settings.login_max_failures,
            per_user=settings.login_max_failures_per_user,
            per_address=settings.login_max_failures_per_address,
            window_s=settings.login_window_s,
        )
        limiter = state.login_limiter = LoginAttempts(state.sessionmaker, limits)
    return limiter


# --- login form token ------------------------------------------------------------------------

LOGIN_CSRF_TTL = 3600


def _login_nonce(request: Request) -> str | None:
    """The nonce of a login-form cookie this server signed (and not expired), else None."""
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    payload = unsign(_secret(request), cookie, purpose=LOGIN_CSRF_PURPOSE) if cookie else None
    nonce = payload.get("n") if payload else None
    return nonce if isinstance(nonce, str) and nonce else None


def _form_token(secret: bytes, nonce: str) -> str:
    return _b64(hmac.new(secret, b"login-form:" + nonce.encode(), hashlib.sha256).digest())


def _login_form_token(request: Request) -> str:
    """The token the login form must post back, or "" when the cookie is missing or forged."""
    nonce = _login_nonce(request)
    return _form_token(_secret(request), nonce) if nonce else ""


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
    """Sign the user in on ``response`` (a new row in ``operator_session``)."""
    from tracker.services import sessions

    secret = _secret(request)
    ttl = _ttl(request)
    with request.app.state.sessionmaker() as session:
        sid = sessions.start(session, user_id=user.id, ttl_s=ttl)
    payload = {
        "uid": user.id,
        "sid": sid,
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
    secret = _secret(request)
    nonce = _login_nonce(request) or secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        {
            "title": "Sign in",
            "error": error,
            "login_csrf": _form_token(secret, nonce),
            "next": _safe_next(request.query_params.get("next")),
            "username": username,
        },
        status_code=status_code,
    )
    cookie = sign(
        secret, {"n": nonce, "exp": int(time.time()) + LOGIN_CSRF_TTL}, purpose=LOGIN_CSRF_PURPOSE
    )
    _set_cookie(request, response, LOGIN_CSRF_COOKIE, cookie, LOGIN_CSRF_TTL)
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
    expected = _login_form_token(request)
    if not expected or not hmac.compare_digest(csrf_token.encode(), expected.encode()):
        return _login_page(
            request, error="The form expired; please sign in again.", status_code=403
        )
    ip = request.client.host if request.client else "unknown"
    limiter = _limiter(request)
    wait = limiter.attempt(ip, username)  # counted before the password is looked at
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
        log.info("failed sign-in from %s", ip)
        # The typed name is kept only when it names a user: a password typed into the name
        # field by mistake must not end up on the audit page.
        if user is not None:
            _audit(request, "auth.login_failed", user.username, "anonymous", "wrong password")
        else:
            _audit(request, "auth.login_failed", "(unknown name)", "anonymous", "no such user")
        return _login_page(
            request, error="Wrong username or password.", status_code=401, username=username
        )
    limiter.succeeded(ip, username)
    log.info("user %s signed in from %s", user.username, ip)
    _audit(request, "auth.login", user.username, "session")
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
    from tracker.services import sessions

    sid = _session_id(request)
    user = current_user(request)
    if sid is not None:
        with request.app.state.sessionmaker() as session:
            sessions.end(session, sid=sid)
    if user is not None:
        _audit(request, "auth.logout", user.username, "session")
    response = RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _audit(
    request: Request, action: str, actor: str, kind: str, detail: str | None = None
) -> None:
    """One sign-in event in the audit log (its own transaction: nothing else is written)."""
    from tracker.services import audit

    who = audit.Actor(
        name=actor, kind=kind, address=request.client.host if request.client else None
    )
    with request.app.state.sessionmaker() as session:
        audit.record(session, actor=who, action=action, detail=detail)


@functools.cache
def _dummy_hash() -> str:
    from tracker.security import hash_password

    return hash_password(secrets.token_urlsafe(16))
