"""The short ingest path (known card, counter moving up) answers exactly like the full one.

``POST /api/v1/taps`` on a card the tracker already knows skips the ORM (one statement on
PostgreSQL, raw sqlite3 on SQLite). These tests post through the API on both databases and
check what is stored with independent SQL, plus the station-token cache.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tracker_testlib import StationCredentials, count_rows, make_station, make_tap

from tracker.db import make_sessionmaker
from tracker.services import stations as station_service
from tracker.services import taps as tap_service

UID = "04C0FFEE000001"


def _card(engine: Engine) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT last_counter, card_id FROM card WHERE uid = :uid"), {"uid": UID}
        ).one()


def _post(client: TestClient, station: StationCredentials, body: dict[str, Any]) -> Any:
    return client.post("/api/v1/taps", json=body, headers=station.headers)


def test_known_card_tap_is_stored_as_answered(
    client: TestClient, station: StationCredentials, engine: Engine
) -> None:
    assert _post(client, station, make_tap(UID, 1)).status_code == 201  # creates the card
    when = datetime(2026, 5, 4, 10, 30, 15, 123456, tzinfo=timezone(timedelta(hours=-3)))
    body = make_tap(UID, 2, card_id="c0ffee01", when=when)
    answer = _post(client, station, body)
    assert answer.status_code == 201, answer.text
    tap = answer.json()["tap"]
    assert answer.json()["created"] is True
    assert (tap["counter"], tap["station"], tap["card_id"]) == (2, "till-1", "c0ffee01")
    assert datetime.fromisoformat(tap["station_time"]) == when
    with make_sessionmaker(engine)() as s:
        stored = tap_service.get_tap(s, tap_id=tap["id"])
    assert stored is not None
    assert stored.model_dump(mode="json") == tap  # what the station was told is stored
    assert tuple(_card(engine)) == (2, "c0ffee01")
    with engine.connect() as conn:
        daily = conn.execute(sa.text("SELECT SUM(taps) FROM tap_daily_count")).scalar_one()
    assert daily == 2  # the rollup trigger ran for both paths


def test_reused_key_with_a_higher_counter_stores_nothing(
    client: TestClient, station: StationCredentials, engine: Engine
) -> None:
    """An accepted tap's key names its card and counter: a key taken from another tap is
    refused before anything is written (it used to be answered with the other tap)."""
    first = _post(client, station, make_tap(UID, 1))
    assert _post(client, station, make_tap(UID, 2)).status_code == 201
    again = _post(client, station, make_tap(UID, 3, key=f"{UID}:1"))
    assert again.status_code == 422
    assert "idempotency_key" in again.text
    retry = _post(client, station, make_tap(UID, 1))
    assert retry.json() == {"tap": first.json()["tap"], "created": False}
    assert count_rows(engine, "tap") == 2
    assert _card(engine).last_counter == 2


def test_key_of_another_station_on_a_known_card_is_a_conflict(
    client: TestClient, station: StationCredentials, engine: Engine
) -> None:
    other = make_station(engine, "till-2")
    assert _post(client, station, make_tap(UID, 1)).status_code == 201
    shared = make_tap(UID, 2, outcome="refused", key="till-1:shared")
    assert _post(client, station, shared).status_code == 201
    answer = _post(client, other, shared)
    assert answer.status_code == 409
    assert answer.json()["detail"] == {"reason": "counter_not_increasing", "last_counter": 1}
    assert count_rows(engine, "tap") == 2
    assert _card(engine).last_counter == 1


def test_blocked_known_card_is_refused_without_storing(
    client: TestClient, station: StationCredentials, engine: Engine
) -> None:
    assert _post(client, station, make_tap(UID, 1)).status_code == 201
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE card SET status = 'blocked' WHERE uid = :u"), {"u": UID})
    answer = _post(client, station, make_tap(UID, 2))
    assert answer.status_code == 403
    assert count_rows(engine, "tap") == 1
    assert _card(engine).last_counter == 1


def test_rotated_token_stops_working_at_once(
    client: TestClient, station: StationCredentials, engine: Engine
) -> None:
    assert _post(client, station, make_tap(UID, 1)).status_code == 201  # now cached
    with client.app.state.sessionmaker() as s:  # type: ignore[attr-defined]  # rotated here
        new_token = station_service.rotate_token(s, name=station.name)
    assert _post(client, station, make_tap(UID, 2)).status_code == 401
    fresh = StationCredentials(name=station.name, token=new_token)
    assert _post(client, fresh, make_tap(UID, 2)).status_code == 201


def test_token_changed_elsewhere_stops_working_when_its_cache_entry_expires(
    client: TestClient,
    station: StationCredentials,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another process (or SQL) revoking a token is seen once the cached lookup expires."""
    assert _post(client, station, make_tap(UID, 1)).status_code == 201
    with engine.begin() as conn:  # revoke behind this process's back
        conn.execute(
            sa.text("UPDATE station SET token_hash = NULL WHERE name = :n"), {"n": station.name}
        )
    later = station_service._clock() + station_service.TOKEN_CACHE_SECONDS + 1
    monkeypatch.setattr(station_service, "_clock", lambda: later)
    assert _post(client, station, make_tap(UID, 2)).status_code == 401
    assert count_rows(engine, "tap") == 1


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_tap_after_the_database_dropped_its_connections_is_stored(
    client: TestClient, station: StationCredentials, engine: Engine
) -> None:
    """Pooled connections are not pinged before use: a restart (here: every backend of the
    test database terminated) must not lose the next tap."""
    assert _post(client, station, make_tap(UID, 1)).status_code == 201
    with psycopg.connect(engine.url.set(drivername="postgresql").render_as_string(False)) as pg:
        pg.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    answer = _post(client, station, make_tap(UID, 2))
    assert answer.status_code == 201, answer.text
    assert count_rows(engine, "tap") == 2
    assert _card(engine).last_counter == 2
