"""``GET /events``: the live event stream (server-sent events) the page script listens to."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from tracker import events
from tracker.web.auth import Viewer
from tracker.web.routes.pages.errors import PageRoute

#: Seconds between SSE comment lines; keeps proxies from closing an idle stream.
HEARTBEAT_SECONDS = 15.0

router = APIRouter(route_class=PageRoute, include_in_schema=False)


@router.get("/events")
async def event_stream(request: Request, user: Viewer) -> StreamingResponse:
    """Server-sent events: ``event: tap|payout|card`` with a JSON row; comments as heartbeat."""
    hub = events.live_updates(request.app).ensure_started()
    queue = hub.attach()  # before the headers go out: nothing after "open" is missed
    await hub.ready()  # PostgreSQL: the watcher LISTENs only while someone subscribes

    async def stream() -> AsyncIterator[str]:
        try:
            yield "retry: 2000\n: connected\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=HEARTBEAT_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if event is None:
                    return
                yield event.sse()
        finally:
            hub.detach(queue)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
