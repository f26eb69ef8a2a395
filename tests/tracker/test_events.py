"""Live updates: the hub, the SQLite watcher, PostgreSQL NOTIFY, and the SSE stream end to end.

The end-to-end tests run the real app under uvicorn and read ``/events`` with httpx, as a
browser's EventSource would. Read timeouts there only guard against a hang; nothing asserts
how fast an event arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from tracker_server import running_server
from tracker_testlib import Operator, make_station, make_tap

from tracker import events
from tracker.db import make_engine, make_sessionmaker
from tracker.models import PayoutCreate, PayoutState, PayoutUpdate, TapCreate
from tracker.services import payouts as payout_service
from tracker.services import taps as tap_service

UID = "04A1B2C3D4E5F6"
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
POSTGRES_ONLY = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)


# --- hub ---------------------------------------------------------------------------------------


def test_hub_fans_each_event_out_to_every_subscriber_in_order() -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        hub = events.EventHub()
        async with hub.subscribe() as a, hub.subscribe() as b:
            for i in range(3):
                hub.publish(events.Event("tap", {"id": i}))
            got_a = [str((await a.get()).data["id"]) for _ in range(3)]  # type: ignore[union-attr]
            got_b = [str((await b.get()).data["id"]) for _ in range(3)]  # type: ignore[union-attr]
        assert hub.subscriber_count == 0
        return got_a, got_b

    assert asyncio.run(scenario()) == (["0", "1", "2"], ["0", "1", "2"])


def test_a_subscriber_that_stops_reading_is_dropped_not_waited_for() -> None:
    async def scenario() -> tuple[list[Any], list[Any]]:
        hub = events.EventHub(queue_size=2)
        reader_got: list[Any] = []
        async with hub.subscribe() as reader, hub.subscribe() as stalled:
            for i in range(4):
                hub.publish(events.Event("tap", {"id": i}))
                reader_got.append((await reader.get()).data["id"])  # type: ignore[union-attr]
            leftovers = []
            while not stalled.empty():
                leftovers.append(stalled.get_nowait())
        return reader_got, leftovers

    reader_got, leftovers = asyncio.run(scenario())
    assert reader_got == [0, 1, 2, 3]
    assert leftovers[-1] is None  # "you were dropped": the SSE stream ends, the browser reconnects


def test_publishing_from_another_thread_reaches_the_loop() -> None:
    async def scenario() -> Any:
        hub = events.EventHub()
        async with hub.subscribe() as queue:
            thread = threading.Thread(target=hub.publish, args=(events.Event("payout", {"id": 7}),))
            thread.start()
            thread.join()
            return await asyncio.wait_for(queue.get(), timeout=10)

    event = asyncio.run(scenario())
    assert event.topic == "payout" and event.data == {"id": 7}


def test_sse_framing_cannot_be_broken_by_newlines_in_data() -> None:
    frame = events.Event("tap", {"reason": "bad\n\nevent: card\ndata: {}"}).sse()
    assert frame.endswith("\n\n")
    lines = frame[:-2].split("\n")
    assert lines[0] == "event: tap"
    assert len(lines) == 2 and lines[1].startswith("data: ")
    assert json.loads(lines[1][len("data: ") :])["reason"].startswith("bad\n\nevent: card")


def test_notify_rejects_unknown_topics() -> None:
    with pytest.raises(ValueError, match="unknown event topic"):
        events.notify(object(), "taps", {"id": 1})


# --- SQLite watcher ----------------------------------------------------------------------------


def _tap(counter: int, **kw: Any) -> TapCreate:
    body = make_tap(UID, counter, **kw)
    body["station_time"] = datetime.now(UTC)
    return TapCreate(**body)


@SQLITE_ONLY
def test_sqlite_watcher_sees_rows_written_by_another_process(engine: Engine, db_url: str) -> None:
    watcher = events.Watcher(events.EventHub(), engine, database_url=db_url)
    assert watcher.poll_once() == []  # the first poll only takes a baseline
    other = make_engine(db_url)  # a station process writing straight into the file
    try:
        with make_sessionmaker(other)() as s:
            tap_service.record_tap(s, station_name="local-till", tap=_tap(5))
            tap_service.record_tap(s, station_name="local-till", tap=_tap(6))
            payout, _ = payout_service.create_payout(
                s,
                payout=PayoutCreate(
                    tap_idempotency_key=f"{UID}:6",
                    amount_msat=21_000,
                    state=PayoutState.AwaitingPayment,
                ),
                station_name="local-till",
            )
        found = watcher.poll_once()
        assert [(e.topic, e.data.get("counter")) for e in found if e.topic == "tap"] == [
            ("tap", 5),
            ("tap", 6),
        ]
        tap_event = found[0].data
        assert tap_event["card_uid"] == UID and tap_event["station"] == "local-till"
        payouts = [e.data for e in found if e.topic == "payout"]
        assert [(p["id"], p["state"], p["amount_sats"]) for p in payouts] == [
            (payout.id, "AwaitingPayment", 21)
        ]
        assert watcher.poll_once() == []  # nothing is reported twice

        with make_sessionmaker(other)() as s:
            payout_service.update_payout(
                s, payout_id=payout.id, update=PayoutUpdate(state=PayoutState.Completed)
            )
        changed = watcher.poll_once()
        assert [(e.topic, e.data["state"]) for e in changed] == [("payout", "Completed")]
    finally:
        other.dispose()


# --- PostgreSQL NOTIFY -------------------------------------------------------------------------


@POSTGRES_ONLY
def test_postgres_notifications_fire_on_commit_only(engine: Engine, db_url: str) -> None:
    import psycopg

    watcher = events.Watcher(events.EventHub(), engine, database_url=db_url)
    with psycopg.connect(watcher._conninfo(), autocommit=True) as listener:
        listener.execute(f"LISTEN {events.CHANNEL}")
        factory = make_sessionmaker(engine)
        with factory() as s:
            events.notify(s, "card", {"uid": "rolled-back"})
            s.rollback()
        with factory() as s:
            events.notify(s, "card", {"uid": "committed"})
            s.commit()
        note = next(listener.notifies(timeout=10, stop_after=1))
    message = json.loads(note.payload)
    assert message == {"topic": "card", "data": {"uid": "committed"}}


@POSTGRES_ONLY
def test_oversized_payloads_are_cut_to_their_ids(engine: Engine) -> None:
    body = events.encode("tap", {"id": 9, "reason": "x" * 20_000})
    assert json.loads(body) == {"topic": "tap", "data": {"id": 9}}


# --- the SSE stream, end to end ----------------------------------------------------------------


def _sign_in(base: str, user: Operator) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=httpx.Timeout(10.0))
    form = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token
    answer = client.post(
        "/login",
        data={"username": user.username, "password": user.password, "csrf_token": token[1]},
    )
    assert answer.status_code in (200, 303), answer.text
    return client


@contextlib.contextmanager
def _stream(client: httpx.Client) -> Iterator[Iterator[tuple[str, dict[str, Any]]]]:
    """Open /events and yield an iterator of (event, data) once the stream is live."""
    with client.stream("GET", "/events", headers={"accept": "text/event-stream"}) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        lines = answer.iter_lines()
        for line in lines:  # the server subscribes before it sends ": connected"
            if line.startswith(": connected"):
                break

        def frames() -> Iterator[tuple[str, dict[str, Any]]]:
            name = ""
            for line in lines:
                if line.startswith("event: "):
                    name = line[len("event: ") :]
                elif line.startswith("data: ") and name:
                    yield name, json.loads(line[len("data: ") :])
                    name = ""

        yield frames()


def _next(frames: Iterator[tuple[str, dict[str, Any]]], topic: str) -> dict[str, Any]:
    for name, data in frames:
        if name == topic:
            return data
    raise AssertionError(f"stream ended before a {topic} event")


def test_a_posted_tap_reaches_an_open_stream(
    settings: Any, engine: Engine, admin_user: Operator, station_token: str
) -> None:
    with running_server(settings, engine) as base:
        operator = _sign_in(base, admin_user)
        with _stream(operator) as frames:
            posted = httpx.post(
                base + "/api/v1/taps",
                json=make_tap(UID, 3),
                headers={"Authorization": f"Bearer {station_token}"},
                timeout=10,
            )
            assert posted.status_code == 201
            data = _next(frames, "tap")
        operator.close()
    assert data["id"] == posted.json()["tap"]["id"]
    assert (data["card_uid"], data["station"], data["counter"]) == (UID, "till-1", 3)
    assert data["url"] == f"/cards/{UID}"


def test_a_tap_on_a_known_card_reaches_an_open_stream(
    settings: Any, engine: Engine, admin_user: Operator, station_token: str
) -> None:
    """The common case (known card, counter moving up) takes the short ingest path; its
    event must arrive all the same (on PostgreSQL the NOTIFY is part of that one statement)."""
    headers = {"Authorization": f"Bearer {station_token}"}
    with running_server(settings, engine) as base:
        first = httpx.post(base + "/api/v1/taps", json=make_tap(UID, 1), headers=headers)
        assert first.status_code == 201
        operator = _sign_in(base, admin_user)
        with _stream(operator) as frames:
            posted = httpx.post(
                base + "/api/v1/taps", json=make_tap(UID, 2), headers=headers, timeout=10
            )
            assert posted.status_code == 201
            data = _next(frames, "tap")
            if data["counter"] == 1:  # SQLite polling may still report the first tap
                data = _next(frames, "tap")
        operator.close()
    assert data["id"] == posted.json()["tap"]["id"]
    assert (data["card_uid"], data["station"], data["counter"]) == (UID, "till-1", 2)


@SQLITE_ONLY
def test_an_unwatched_poll_moves_on_without_loading_rows(engine: Engine, db_url: str) -> None:
    """With no page subscribed, the SQLite watcher only advances its marks; rows committed
    after a page subscribes are still reported."""
    station = make_station(engine, "till-9")
    hub = events.EventHub()
    watcher = events.Watcher(hub, engine, database_url=db_url)
    watcher.poll_once(only_if_watched=True)  # baseline
    factory = make_sessionmaker(engine)
    with factory() as s:
        tap_service.record_tap(
            s, station_name=station.name, tap=TapCreate.model_validate(make_tap(UID, 1))
        )
    assert watcher.poll_once(only_if_watched=True) == []  # nobody watching: skipped

    async def watched() -> list[events.Event]:
        async with hub.subscribe():
            with factory() as s:
                tap_service.record_tap(
                    s, station_name=station.name, tap=TapCreate.model_validate(make_tap(UID, 2))
                )
            return await asyncio.to_thread(watcher.poll_once, only_if_watched=True)

    found = asyncio.run(watched())
    assert [e.data["counter"] for e in found] == [2]  # the skipped tap is not replayed


def test_writes_from_another_process_and_admin_edits_reach_the_stream(
    settings: Any, engine: Engine, db_url: str, admin_user: Operator
) -> None:
    with running_server(settings, engine) as base:
        operator = _sign_in(base, admin_user)
        with _stream(operator) as frames:
            other = make_engine(db_url)  # a local station writing straight into the database
            try:
                with make_sessionmaker(other)() as s:
                    tap_service.record_tap(s, station_name="back-office", tap=_tap(11))
            finally:
                other.dispose()
            tap = _next(frames, "tap")
            assert (tap["counter"], tap["station"]) == (11, "back-office")

            page = operator.get(f"/cards/{UID}")
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert csrf
            renamed = operator.post(
                f"/cards/{UID}/alias", data={"alias": "Front desk", "csrf_token": csrf[1]}
            )
            assert renamed.status_code in (200, 303)
            card = _next(frames, "card")
        operator.close()
    assert card == {
        "uid": UID,
        "alias": "Front desk",
        "card_label": "Front desk",  # how lists name it (static/live.js redraws links with it)
        "status": "active",
        "last_counter": 11,
        "url": f"/cards/{UID}",
    }


@POSTGRES_ONLY
def test_two_tracker_processes_on_postgres_both_stay_live(
    settings: Any, db_url: str, engine: Engine, admin_user: Operator
) -> None:
    station = make_station(engine, "till-7")
    engine_a, engine_b = make_engine(db_url), make_engine(db_url)
    try:
        with (
            running_server(settings, engine_a) as base_a,
            running_server(settings, engine_b) as base_b,
        ):
            operator = _sign_in(base_b, admin_user)  # watching through process B
            with _stream(operator) as frames:
                posted = httpx.post(  # the station talks to process A
                    base_a + "/api/v1/taps",
                    json=make_tap(UID, 1, station="till-7"),
                    headers=station.headers,
                    timeout=10,
                )
                assert posted.status_code == 201
                data = _next(frames, "tap")
            operator.close()
    finally:
        engine_a.dispose()
        engine_b.dispose()
    assert (data["card_uid"], data["station"], data["counter"]) == (UID, "till-7", 1)


@SQLITE_ONLY
def test_an_open_dashboard_does_not_keep_the_tracker_from_stopping(
    settings: Any, engine: Engine, db_url: str, admin_user: Operator, tmp_path: Any
) -> None:
    """SIGTERM ends the SSE streams, so uvicorn's graceful shutdown can finish."""
    import os
    import signal
    import subprocess
    import sys

    from tracker_server import free_port

    port = free_port()
    env = {
        **os.environ,
        "TRACKER_DATABASE_URL": db_url,
        "TRACKER_SECRET_KEY": settings.secret_key,
        "TRACKER_LOG_LEVEL": "warning",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "tracker.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(base + "/login", timeout=2).status_code == 200:
                    break
            threading.Event().wait(0.1)
        operator = _sign_in(base, admin_user)
        with _stream(operator) as frames:
            server.send_signal(signal.SIGTERM)
            assert list(frames) == []  # the stream ends cleanly instead of hanging
        # uvicorn re-raises the signal after its graceful shutdown: exit status -SIGTERM.
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)
        operator.close()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


@SQLITE_ONLY
def test_idle_streams_get_heartbeat_comments(
    settings: Any, engine: Engine, admin_user: Operator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proxies close idle connections; a comment line every so often keeps the stream open."""
    from tracker.web.routes.pages import live

    monkeypatch.setattr(live, "HEARTBEAT_SECONDS", 0.05)
    with running_server(settings, engine) as base:
        operator = _sign_in(base, admin_user)
        with operator.stream("GET", "/events") as answer:
            lines = answer.iter_lines()
            seen = [next(lines) for _ in range(6)]
        operator.close()
    assert seen[:2] == ["retry: 2000", ": connected"]
    assert ": keep-alive" in seen[2:]


@SQLITE_ONLY
def test_after_a_long_pause_only_the_newest_rows_are_replayed(
    engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events.watcher, "MAX_BACKLOG", 3)
    watcher = events.Watcher(events.EventHub(), engine, database_url=db_url)
    watcher.poll_once()
    with make_sessionmaker(engine)() as s:
        for counter in range(1, 6):
            tap_service.record_tap(s, station_name="till", tap=_tap(counter))
    assert [e.data["counter"] for e in watcher.poll_once()] == [3, 4, 5]
