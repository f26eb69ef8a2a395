"""``POST /api/v1/taps`` without FastAPI's per-request machinery: the station's hot path.

Why: a tap report is the one request a tracker gets in volume (every station, every tap), and
a profile of the server put about half of each tap's CPU in FastAPI and Starlette (the
middleware chain, route matching, dependency solving, body-to-model) rather than in the tap.
This pure ASGI middleware sits just inside :class:`~tracker.web.limits.RequestGate` (so the
body limit holds and the station token was checked before the body, as for every station
write) and answers a well-formed report itself: read the body, validate it with the same
model, record it with the same recorder, answer with the same :func:`tap_answer`.

What it does not take on, it hands to the FastAPI route unchanged, with the body it read
replayed, so every unusual answer stays FastAPI's by construction: a body that does not
validate (the 422 list of field reasons), a content type other than JSON, a query string
(checked by the app-wide text check), or a request without a station in its scope. The route
``POST /api/v1/taps`` (``routes/api/taps.py``) remains what the OpenAPI document shows and the
way the endpoint works in an app built without this lane.

Failures after validation are answered here as the app's exception handlers answer them:
409/403 from :func:`tap_answer`, 503 with ``Retry-After`` when SQLite's lock is held
elsewhere, and a logged 500 with a reference for anything unexpected (``tracker.web.answers``).
The latency histogram gets the route's label (``scope["route"]``) as if routing had run.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tracker.db import is_busy
from tracker.models import TapCreate
from tracker.services.taps import TapRecorder
from tracker.web import answers
from tracker.web.limits import STATION_STATE_KEY, BodyTooLarge
from tracker.web.routes.api.taps import router as taps_router
from tracker.web.routes.api.taps import tap_answer

log = logging.getLogger(__name__)

PATH = "/api/v1/taps"


def _is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    """``Content-Type: application/json`` (parameters allowed), the only type taken here.
    FastAPI also reads ``+json`` types and refuses a body without a type: its answers."""
    for name, value in headers:
        if name.lower() == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"application/json"
    return False


class TapLane:
    """Answers well-formed ``POST /api/v1/taps`` reports; everything else passes to ``app``."""

    def __init__(self, app: ASGIApp, *, fastapi_app: Any) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        # The route's own object, as routing would leave it in the scope (metrics label).
        self.route = next(
            r for r in taps_router.routes if getattr(r, "path", None) == PATH
            and "POST" in getattr(r, "methods", ())
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] != "POST"
            or scope.get("query_string")
            or STATION_STATE_KEY not in scope.get("state", {})
            or not _is_json(scope["headers"])
        ):
            await self.app(scope, receive, send)
            return
        try:
            body = await _read_body(receive)
        except BodyTooLarge as exc:
            await JSONResponse({"detail": exc.detail}, exc.status_code)(scope, receive, send)
            return
        try:
            tap = TapCreate.model_validate_json(body)
        except ValueError:  # ValidationError, or a JSON error: FastAPI words the 422
            await self.app(scope, _replay(body, receive), send)
            return
        scope["route"] = self.route
        recorder: TapRecorder = self.fastapi_app.state.tap_recorder
        station = scope["state"][STATION_STATE_KEY]
        try:
            response = await tap_answer(recorder, station, tap)
        except Exception as exc:  # answered as the app's handlers would
            await self._failure(scope, receive, send, exc)
            return
        await response(scope, receive, send)

    @staticmethod
    async def _failure(scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
        if is_busy(exc):
            log.warning("database busy on POST %s: answered 503", PATH)
            status, body, headers = answers.busy()
            await JSONResponse(body, status, headers)(scope, receive, send)
            return
        _, body = answers.internal_error("POST", PATH)  # logs exc: it is being handled
        await JSONResponse(body, 500)(scope, receive, send)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body already read, then whatever the connection says next (a disconnect)."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again
