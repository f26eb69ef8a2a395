"""``GET /events``: the live event stream (server-sent events) the page script listens to."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from tracker import events
from tracker.services.sessions import RECHECK_SECONDS
from tracker.web.auth import Viewer, still_signed_in
from tracker.web.routes.pages.errors import PageRoute

#: Seconds between SSE comment lines; keeps proxies from closing an idle stream.
HEARTBEAT_SECONDS = 15.0

router = APIRouter(route_class=PageRoute, include_in_schema=False)


@router.get("/events")
async def event_stream(request: Request, user: Viewer) -> StreamingResponse:
    """Server-sent events: ``event: tap|payout|card`` with a JSON row; comments as heartbeat.

    The stream re-checks its session every :data:`RECHECK_SECONDS` and ends when the session
    was ended (logout, password or role change, user disabled or removed) in any process."""
    hub = events.live_updates(request.app).ensure_started()
    queue = hub.attach()  # before the headers go out: nothing after "open" is missed
    await hub.ready()  # PostgreSQL: the watcher LISTENs only while someone subscribes

    async def stream() -> AsyncIterator[str]:
        try:
            yield "retry: 2000\n: connected\n\n"
            last_sent = checked = time.monotonic()
            while True:
                now = time.monotonic()
                if now - checked >= RECHECK_SECONDS:
                    if not await anyio.to_thread.run_sync(still_signed_in, request):
                        return
                    checked = now
                if now - last_sent >= HEARTBEAT_SECONDS:
                    yield ": keep-alive\n\n"
                    last_sent = now
                wait = min(checked + RECHECK_SECONDS, last_sent + HEARTBEAT_SECONDS) - now
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=max(wait, 0.01))
                except TimeoutError:
                    continue
                if event is None:
                    return
                yield event.sse()
                last_sent = time.monotonic()
        finally:
            hub.detach(queue)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
