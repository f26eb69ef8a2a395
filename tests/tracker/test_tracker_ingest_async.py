"""The async ingest path on PostgreSQL (``ingest_tap_async`` on ``tracker.db.AsyncPgPool``).

``POST /api/v1/taps`` awaits the one-statement compare-and-set on an async connection instead
of a worker thread. These tests race requests on one event loop (where the async path really
interleaves), listen for the live events with an independent connection, and check that the
pool stays within its size and lets go of its connections when the app stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import httpx
import psycopg
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tracker_testlib import count_rows, make_station, make_tap

from tracker import events
from tracker.db import AsyncPgPool
from tracker.web.app import create_app

pytestmark = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)

UID = "04A5B1C0000001"


def _conninfo(engine: Engine) -> str:
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def test_racing_stations_on_one_loop_store_each_counter_once_and_notify_once(
    engine: Engine, settings: Any
) -> None:
    """Six stations post the same card+counter at once, for five counters in a row: each
    round has exactly one 201 (the others 409 with the stored counter), one stored tap, and
    one live event carrying the winner's tap id."""
    stations = [make_station(engine, f"till-{n}") for n in range(6)]
    app = create_app(settings, engine=engine)

    async def rounds() -> list[tuple[int, list[int], list[Any]]]:
        transport = httpx.ASGITransport(app=app)
        results = []
        async with httpx.AsyncClient(transport=transport, base_url="http://tracker") as http:
            first = await http.post(
                "/api/v1/taps", json=make_tap(UID, 1), headers=stations[0].headers
            )
            assert first.status_code == 201  # the card is known from here on
            for counter in range(2, 7):
                answers = await asyncio.gather(
                    *(
                        http.post("/api/v1/taps", json=make_tap(UID, counter), headers=s.headers)
                        for s in stations
                    )
                )
                codes = sorted(a.status_code for a in answers)
                results.append((counter, codes, [a.json() for a in answers]))
        app.state.database.close_async_pools()
        return results

    with psycopg.connect(_conninfo(engine), autocommit=True) as listener:
        listener.execute(f"LISTEN {events.CHANNEL}")
        results = asyncio.run(rounds())
        heard = [json.loads(n.payload) for n in listener.notifies(timeout=1.0, stop_after=99)]

    winners = {}
    for counter, codes, bodies in results:
        assert codes == [201, 409, 409, 409, 409, 409], (counter, codes)
        refusals = [b["detail"] for b in bodies if "detail" in b]
        assert refusals == [{"reason": "counter_not_increasing", "last_counter": counter}] * 5
        (winner,) = [b["tap"] for b in bodies if "tap" in b]
        winners[winner["id"]] = (counter, winner["station"])
    assert count_rows(engine, "tap") == 6
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT counter FROM tap ORDER BY counter")).scalars()
        assert list(stored) == [1, 2, 3, 4, 5, 6]
    taps_heard = [e["data"] for e in heard if e.get("topic") == "tap"]
    by_id = {e["id"]: (e["counter"], e["station"]) for e in taps_heard if e["counter"] > 1}
    assert len(taps_heard) == 6  # one per stored tap, none for the refused ones
    assert by_id == winners


def test_pool_never_opens_more_than_its_size_and_reuses_a_returned_connection(
    engine: Engine,
) -> None:
    async def scenario() -> None:
        pool = AsyncPgPool(_conninfo(engine), 2, asyncio.get_running_loop())
        async with contextlib.AsyncExitStack() as first:
            a = await first.enter_async_context(pool.connection())
            async with pool.connection() as b:
                assert a is not b
                assert a.info.backend_pid != b.info.backend_pid

                async def third() -> int:
                    async with pool.connection() as c:
                        cursor = await c.execute("SELECT pg_backend_pid()")
                        row = await cursor.fetchone()
                        assert row is not None
                        return int(row[0])

                waiting = asyncio.create_task(third())
                done, _ = await asyncio.wait({waiting}, timeout=0.3)
                assert not done  # both connections are out: the third caller waits
                held_pid = b.info.backend_pid
            assert await waiting == held_pid  # it got b back, no new connection
        assert not a.closed and a.autocommit
        pool.close()
        assert a.closed and b.closed

    asyncio.run(scenario())


def test_a_broken_pooled_connection_is_replaced(engine: Engine) -> None:
    async def scenario() -> None:
        pool = AsyncPgPool(_conninfo(engine), 1, asyncio.get_running_loop())
        async with pool.connection() as conn:
            dead_pid = conn.info.backend_pid
        with psycopg.connect(_conninfo(engine), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (dead_pid,))
        with pytest.raises(psycopg.OperationalError):
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")
        async with pool.connection() as conn:
            cursor = await conn.execute("SELECT pg_backend_pid()")
            row = await cursor.fetchone()
            assert row is not None and row[0] != dead_pid
        pool.close()

    asyncio.run(scenario())


def _connections_to(engine: Engine) -> int:
    with psycopg.connect(_conninfo(engine), autocommit=True) as pg:
        row = pg.execute(
            "SELECT COUNT(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_stopping_the_app_closes_its_async_connections(engine: Engine, settings: Any) -> None:
    station = make_station(engine, "till-1")
    app = create_app(settings, engine=engine)
    with TestClient(app) as client:
        for counter in (1, 2, 3):
            answer = client.post(
                "/api/v1/taps", json=make_tap(UID, counter), headers=station.headers
            )
            assert answer.status_code == 201
        assert _connections_to(engine) >= 1
    engine.dispose()
    deadline = time.monotonic() + 10  # a backend exits shortly after its client leaves
    while _connections_to(engine) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _connections_to(engine) == 0


def test_a_request_cancelled_mid_statement_does_not_block_the_next_user(engine: Engine) -> None:
    """A request task cancelled while its statement runs (the client went away) returns its
    connection; the next user gets a connection that answers at once, not a busy one."""

    async def scenario() -> int:
        pool = AsyncPgPool(_conninfo(engine), 1, asyncio.get_running_loop())
        started = asyncio.Event()

        async def slow_request() -> None:
            async with pool.connection() as conn:
                started.set()
                await conn.execute("SELECT pg_sleep(30)")

        task = asyncio.create_task(slow_request())
        await started.wait()
        await asyncio.sleep(0.2)  # the statement is running on the server
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        async with pool.connection() as conn:
            cursor = await asyncio.wait_for(conn.execute("SELECT 1"), timeout=20)
            row = await cursor.fetchone()
        pool.close()
        assert row is not None
        return int(row[0])

    assert asyncio.run(scenario()) == 1
