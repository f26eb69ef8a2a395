"""The tap lane answers ``POST /api/v1/taps`` exactly as the FastAPI route does.

Two trackers on two databases (SQLite and PostgreSQL): one as built by ``create_app`` (the
lane in front), its twin with the lane taken out, so every request reaches the route. The same
requests go to both, good and bad, and the answers must be the same bytes (the reception
time aside). A second test drives the lane alone in front of a recording inner app, to show
which requests it answers itself and that everything else reaches the app with its body
intact.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from tracker_testlib import create_postgres_db, drop_postgres_db, make_station, make_tap

from tracker import migrations
from tracker.db import make_engine
from tracker.settings import load_settings
from tracker.web.app import create_app
from tracker.web.deps import look_up_station
from tracker.web.limits import MAX_BODY_BYTES, STATION_STATE_KEY
from tracker.web.tap_lane import TapLane

UID = "04AB12CD34EF56"


def _tracker(url: str, *, lane: bool) -> tuple[Any, str, Any]:
    engine = make_engine(url)
    migrations.upgrade(engine)
    settings = load_settings(env={}, database_url=url, secret_key="lane-test-" + "k" * 32,
                             persist_secret=False)
    app = create_app(settings, engine=engine)
    if not lane:
        app.user_middleware = [m for m in app.user_middleware if m.cls is not TapLane]
    return app, make_station(engine, "till-1").token, engine


@pytest.fixture
def twins(db_url: str, tmp_path: Path) -> Iterator[list[tuple[TestClient, str, Any]]]:
    if db_url.startswith("sqlite"):
        other = f"sqlite:///{tmp_path / 'twin.sqlite'}"
    else:
        other = create_postgres_db()
    built = [_tracker(db_url, lane=True), _tracker(other, lane=False)]
    clients = [TestClient(app) for app, _, _ in built]
    try:
        for c in clients:
            c.__enter__()
        yield [(c, token, engine) for c, (_, token, engine) in zip(clients, built, strict=True)]
    finally:
        for c in clients:
            c.__exit__(None, None, None)
        for _, _, engine in built:
            engine.dispose()
        if not db_url.startswith("sqlite"):
            drop_postgres_db(other)


def _requests() -> list[tuple[str, dict[str, Any]]]:
    """(what, httpx request arguments without the token) in order; comments: the answer."""
    good = json.dumps(make_tap(UID, 1, when=None))
    fixed_time = "2026-12-06T10:00:00+01:00"

    def body(counter: int, **kw: Any) -> str:
        return json.dumps({**make_tap(UID, counter), "station_time": fixed_time, **kw})

    js = {"content-type": "application/json"}
    return [
        ("new tap: 201", {"content": body(1), "headers": js}),
        ("the same again: 200", {"content": body(1), "headers": js}),
        ("higher: 201", {"content": body(5), "headers": js}),
        ("replay: 409", {"content": body(3), "headers": js}),
        ("lower-case UID and key: 201", {
            "content": body(6, card_uid=UID.lower(), idempotency_key=f"{UID.lower()}:6"),
            "headers": js}),
        ("charset parameter: 201",
         {"content": body(7), "headers": {"content-type": "application/json; charset=utf-8"}}),
        ("no content type: 422", {"content": body(8), "headers": {}}),
        ("a +json type, answered by the route: 201",
         {"content": body(8), "headers": {"content-type": "application/vnd.api+json"}}),
        ("text/plain: 422", {"content": body(9), "headers": {"content-type": "text/plain"}}),
        ("key of another tap: 422",
         {"content": body(9, idempotency_key=f"{UID}:1"), "headers": js}),
        ("NUL in the host: 422", {"content": body(9, issuer_host="pay\u0000.example"),
                                  "headers": js}),
        ("counter out of range: 422", {"content": body(2**70), "headers": js}),
        ("broken JSON: 422", {"content": good[:-5], "headers": js}),
        ("not an object: 422", {"content": "[1, 2]", "headers": js}),
        ("empty body: 422", {"content": "", "headers": js}),
        ("NUL in the query: 422",
         {"content": body(9), "headers": js, "params": {"x": "\u0000"}}),
        ("refused tap: 201", {"content": json.dumps({
            **make_tap(UID, 0, outcome="refused", reason="bad_cmac", key="till-1:r-1"),
            "station_time": fixed_time}), "headers": js}),
        ("streamed body over the limit: 413", {
            "content": iter([b"{" + b" " * (MAX_BODY_BYTES // 2)] * 3), "headers": js}),
        ("blocked card: 403", {"content": body(10), "headers": js, "block": True}),
    ]


def _comparable(response: Any) -> tuple[int, str | None, Any]:
    try:
        payload: Any = response.json()
    except ValueError:
        payload = response.text
    if isinstance(payload, dict) and isinstance(payload.get("tap"), dict):
        payload["tap"].pop("received_at")
    return response.status_code, response.headers.get("content-type"), payload


def test_the_lane_answers_every_request_as_the_route_does(twins: Any) -> None:
    seen: list[list[Any]] = [[], []]
    for what, args in _requests():
        args = dict(args)
        block = args.pop("block", False)
        for n, (client, token, engine) in enumerate(twins):
            if block:
                with engine.begin() as conn:
                    conn.execute(sa.text("UPDATE card SET status = 'blocked'"))
            call = dict(args)
            if "content" in call and not isinstance(call["content"], str):
                call["content"] = iter([b"{" + b" " * (MAX_BODY_BYTES // 2)] * 3)
            headers = {**call.pop("headers"), "authorization": f"Bearer {token}"}
            response = client.post("/api/v1/taps", headers=headers, **call)
            seen[n].append((what, *_comparable(response)))
    codes = [(what, status) for what, status, _, _ in seen[0]]
    assert [c for c in codes if not c[0].endswith(str(c[1]))] == []
    assert seen[0] == seen[1]


class _Inner:
    """An app behind the lane that records what reaches it and answers 299."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def _call(lane: TapLane, station: Any, body: bytes, *, query: bytes = b"",
          content_type: bytes = b"application/json", chunks: int = 1) -> int:
    scope = {
        "type": "http", "method": "POST", "path": "/api/v1/taps", "query_string": query,
        "headers": [(b"content-type", content_type)], "state": {STATION_STATE_KEY: station},
    }
    size = max(1, -(-len(body) // chunks))
    parts = [body[i:i + size] for i in range(0, len(body), size)] or [b""]
    messages = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
                for i, p in enumerate(parts)]
    sent: list[Any] = []

    async def receive() -> Any:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    asyncio.run(lane(scope, receive, send))
    return int(sent[0]["status"])


def test_the_lane_answers_good_reports_and_hands_the_rest_over_with_their_bodies(
    app: Any, client: TestClient, station: Any
) -> None:
    found = asyncio.run(look_up_station(app.state.database, station.token))
    assert found is not None
    inner = _Inner()
    lane = TapLane(inner, fastapi_app=app)
    good = json.dumps(make_tap(UID, 1)).encode()

    assert _call(lane, found, good, chunks=3) == 201  # answered by the lane
    assert inner.bodies == []
    handed = [
        (json.dumps(make_tap(UID, 2, key="wrong")).encode(), {}),
        (b"{broken", {}),
        (good, {"query": b"x=1"}),
        (good, {"content_type": b"application/vnd.api+json"}),
    ]
    for body, extra in handed:
        assert _call(lane, found, body, chunks=2, **extra) == 299
    assert inner.bodies == [body for body, _ in handed]  # each body exactly as sent
