"""Fixtures for the tracker tests, shared with the web-view tests.

``db_url`` runs each test on SQLite (a temp file) and on PostgreSQL (a throwaway database
``tracker_test_<random>`` on 127.0.0.1:5432, dropped afterwards; ``require("postgres", …)``
when the server is not reachable). The rest builds on it: ``engine`` (migrated to head),
``settings``, ``app``, ``client``, ``session``, ``station`` / ``station_token``,
``admin_user`` / ``viewer_user``, ``admin_client`` / ``viewer_client`` (signed in).
Plain helpers (``make_tap``, ``make_station``, ``login``, ``count_rows``…) are in
``tracker_testlib``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session
from tracker_testlib import (
    Operator,
    OperatorClient,
    StationCredentials,
    create_postgres_db,
    drop_postgres_db,
    login,
    make_station,
    make_user,
)

from tracker import migrations
from tracker.db import make_engine, make_sessionmaker
from tracker.models import Role
from tracker.settings import TrackerSettings, load_settings
from tracker.web.app import create_app


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database (no schema yet) on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tracker.sqlite'}"
        return
    url = create_postgres_db()
    try:
        yield url
    finally:
        drop_postgres_db(url)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on a database migrated to the Alembic head."""
    eng = make_engine(db_url)
    migrations.upgrade(eng)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def settings(db_url: str) -> TrackerSettings:
    return load_settings(
        env={},
        database_url=db_url,
        secret_key="test-secret-" + secrets.token_hex(16),
        persist_secret=False,
    )


@pytest.fixture
def app(settings: TrackerSettings, engine: Engine) -> Any:
    return create_app(settings, engine=engine)


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with make_sessionmaker(engine)() as s:
        yield s


@pytest.fixture
def station(engine: Engine) -> StationCredentials:
    """A station named ``till-1`` with a fresh token."""
    return make_station(engine, "till-1")


@pytest.fixture
def station_token(station: StationCredentials) -> str:
    return station.token


@pytest.fixture
def admin_user(engine: Engine) -> Operator:
    return make_user(engine, "admin", Role.admin)


@pytest.fixture
def viewer_user(engine: Engine) -> Operator:
    return make_user(engine, "viewer", Role.viewer)


@pytest.fixture
def admin_client(app: Any, admin_user: Operator) -> Iterator[OperatorClient]:
    with TestClient(app) as c:
        yield OperatorClient(client=c, csrf=login(c, admin_user))


@pytest.fixture
def viewer_client(app: Any, viewer_user: Operator) -> Iterator[OperatorClient]:
    with TestClient(app) as c:
        yield OperatorClient(client=c, csrf=login(c, viewer_user))
