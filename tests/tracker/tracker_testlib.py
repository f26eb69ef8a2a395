"""Helpers for tracker tests (importable as ``tracker_testlib`` from tests/tracker/*).

The fixtures themselves live in ``conftest.py`` next to this file; this module holds the plain
functions and types they (and the page tests) use.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from components import require
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tracker.db import make_sessionmaker
from tracker.models import Role
from tracker.services import stations as station_service
from tracker.services import users as user_service

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USERS = ("postgres", "root")
_pg_state: dict[str, tuple[str | None, str]] = {}


def pg_admin_user() -> tuple[str | None, str]:
    """A PostgreSQL role that can create databases, or ``(None, why not)``. Cached."""
    if "admin" in _pg_state:
        return _pg_state["admin"]
    import psycopg

    why = "no role tried"
    found: str | None = None
    for user in PG_USERS:
        try:
            with psycopg.connect(
                host=PG_HOST, port=PG_PORT, user=user, dbname="postgres", connect_timeout=3
            ):
                found = user
                break
        except psycopg.Error as exc:
            why = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
    _pg_state["admin"] = (found, "" if found else f"PostgreSQL on {PG_HOST}:{PG_PORT}: {why}")
    return _pg_state["admin"]


def create_postgres_db() -> str:
    """Create ``tracker_test_<random>`` and return its URL (require()s PostgreSQL)."""
    import psycopg

    user, why = pg_admin_user()
    require("postgres", user is not None, why)
    name = f"tracker_test_{secrets.token_hex(6)}"
    with psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=user, dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    return f"postgresql+psycopg://{user}@{PG_HOST}:{PG_PORT}/{name}"


def drop_postgres_db(url: str) -> None:
    import psycopg

    user, _ = pg_admin_user()
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=user, dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


@dataclass(frozen=True)
class StationCredentials:
    name: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def make_station(engine: Engine, name: str) -> StationCredentials:
    with make_sessionmaker(engine)() as s:
        _, token = station_service.create_station(s, name=name)
    return StationCredentials(name=name, token=token)


@dataclass(frozen=True)
class Operator:
    username: str
    password: str
    role: Role


def make_user(engine: Engine, username: str, role: Role) -> Operator:
    password = "pw-" + secrets.token_urlsafe(12)
    with make_sessionmaker(engine)() as s:
        user_service.create_user(s, username=username, password=password, role=role)
    return Operator(username=username, password=password, role=role)


def login_form_token(client: Any) -> str:
    """GET /login (sets the signed form cookie) and return the form's CSRF token."""
    import re

    page = client.get("/login")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, page.text
    return match.group(1)


def login(client: TestClient, user: Operator) -> str:
    """Sign ``user`` in through /login (the sign-in form); returns the session's CSRF token."""
    from tracker.web import auth

    form_token = login_form_token(client)
    answer = client.post(
        "/login",
        data={"username": user.username, "password": user.password, auth.CSRF_FIELD: form_token},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    cookie = client.cookies.get(auth.SESSION_COOKIE)
    assert cookie
    secret = client.app.state.settings.secret_key.encode()  # type: ignore[attr-defined]
    payload = auth.unsign(secret, cookie)
    assert payload is not None
    return str(payload["csrf"])


@dataclass
class OperatorClient:
    """A TestClient signed in as an operator, with the CSRF header writes need."""

    client: TestClient
    csrf: str

    @property
    def write_headers(self) -> dict[str, str]:
        return {"X-CSRF-Token": self.csrf}


def make_tap(
    uid: str = "04A1B2C3D4E5F6",
    counter: int = 1,
    *,
    outcome: str = "accepted",
    key: str | None = None,
    station: str = "till-1",
    reason: str | None = None,
    when: datetime | None = None,
    card_id: str | None = None,
    issuer_host: str | None = "pay.example.com",
) -> dict[str, Any]:
    """A tap body as a station posts it (idempotency keys follow the station convention)."""
    if key is None:
        if outcome == "accepted":
            key = f"{uid.upper()}:{counter}"
        else:
            key = f"{station}:{secrets.token_hex(8)}"
    return {
        "idempotency_key": key,
        "card_uid": uid,
        "card_id": card_id,
        "counter": counter,
        "station_time": (when or datetime.now(UTC)).isoformat(),
        "outcome": outcome,
        "reason": reason,
        "issuer_host": issuer_host,
    }


def count_rows(engine: Engine, table: str, where: str = "", **params: Any) -> int:
    """Independent row count in plain SQL (not through the services under test)."""
    sql = f"SELECT COUNT(*) FROM {table}" + (f" WHERE {where}" if where else "")
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql), params).scalar_one())


# --- twin worlds: the same cards under other UIDs, to compare two ways of storing taps ----------

#: Card letters; each world gets its own UIDs for them.
TWIN_CARDS = "XNYWRZ"


def twin_uid(world: int, card: str) -> str:
    return f"04{world:02X}{ord(card):02X}00000000{world:02X}"


def twin_neutral(world: int, value: Any) -> str:
    """A world's text with its UIDs replaced by the card letters (to compare worlds)."""
    text = str(value)
    for card in TWIN_CARDS:
        text = text.replace(twin_uid(world, card), card)
    return text


def block_and_set_back(engine: Engine, world: int) -> None:
    """An operator blocks card W and sets card R's counter back to 2 (below a stored tap)."""
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE card SET status = 'blocked' WHERE uid = :u"),
                     {"u": twin_uid(world, "W")})
        conn.execute(sa.text("UPDATE card SET last_counter = 2 WHERE uid = :u"),
                     {"u": twin_uid(world, "R")})
