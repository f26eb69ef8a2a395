"""The door of the app: request bodies are capped, and a station's token is checked before
its body is read.

Why: FastAPI reads and parses a body before any dependency runs, so a 200 MB body with a
wrong token used to cost seconds and hundreds of MB before the 401. :class:`RequestGate` is a
pure ASGI middleware in front of the app:

* a declared ``Content-Length`` over :data:`MAX_BODY_BYTES` is answered 413 at once, unread;
  a chunked body is counted as it streams and refused (413) the moment it passes the limit;
* on the station write routes (taps, claims, payouts) the Bearer token is looked up first
  (cached, see :mod:`tracker.services.stations`): an unknown or missing token is a 401 before
  one byte of the body is read. The station found is left in ``scope["state"]`` for the
  route's dependency (:func:`tracker.web.deps.station_of`), so it is not looked up twice.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Largest request body: a batch of a few hundred taps is ~200 kB; nothing we accept is near.
MAX_BODY_BYTES = 1024 * 1024

#: Where only a station may write (POST; PATCH of a payout): token first, body after.
_STATION_WRITES = re.compile(
    r"^/api/v1/(taps(/batch)?|claims|stations/heartbeat|payouts(/\d{1,19})?|cards/register|cards/[0-9A-Fa-f]{8,20}/wiped)$"
)

#: Key of the authenticated station in ``scope["state"]``.
STATION_STATE_KEY = "station"


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit (FastAPI lets an
    ``HTTPException`` through its body parsing, so the answer is this 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            status_code=413,
            detail={"reason": "body_too_large", "message": f"send at most {limit} bytes"},
        )


async def _answer(send: Send, status: int, detail: dict[str, str], **headers: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    raw.append((b"connection", b"close"))  # the unread body is not worth draining
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class RequestGate:
    """Body limit and station-token-first for an ASGI app (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, fastapi_app: Any, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared < 0:
                await _answer(
                    send,
                    400,
                    {"reason": "bad_content_length", "message": "Content-Length must be a number"},
                )
                return
            if declared > self.limit:
                await _answer(
                    send,
                    413,
                    {"reason": "body_too_large", "message": f"send at most {self.limit} bytes"},
                )
                return
        if _STATION_WRITES.match(scope["path"]) and not await self._station_first(
            scope, headers, send
        ):
            return
        await self.app(scope, self._counting(receive), send)

    async def _station_first(self, scope: Scope, headers: dict[bytes, bytes], send: Send) -> bool:
        """Look the Bearer token up before the body; False when a 401 was sent. Requests
        without a Bearer token go on (an operator's PATCH of a payout uses its cookie)."""
        from tracker.web.deps import look_up_station  # deps imports the app's services

        header = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        is_bearer = scheme.lower() == "bearer" and token.strip()
        if not is_bearer:
            if scope["method"] == "POST":  # station-only routes
                await _answer(
                    send,
                    401,
                    {
                        "reason": "unauthorized",
                        "message": "send the station token as 'Authorization: Bearer <token>'",
                    },
                    www_authenticate="Bearer",
                )
                return False
            return True
        station = await look_up_station(self.fastapi_app.state.database, token.strip())
        if station is None:
            await _answer(
                send,
                401,
                {
                    "reason": "unauthorized",
                    "message": "unknown station token; create one with `tracker stations add`",
                },
                www_authenticate="Bearer",
            )
            return False
        scope.setdefault("state", {})[STATION_STATE_KEY] = station
        return True

    def _counting(self, receive: Receive) -> Receive:
        seen = 0
        limit = self.limit

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        return counted
