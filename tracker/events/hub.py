"""In-process fan-out of live events to the SSE subscribers of one app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tracker.events.notify import Event

log = logging.getLogger(__name__)


class EventHub:
    """In-process fan-out: one bounded queue per subscriber; a slow subscriber is dropped.

    Dropping (rather than blocking) keeps one stalled browser from delaying everyone else; its
    EventSource reconnects by itself. ``publish`` may be called from any thread.
    """

    def __init__(self, *, queue_size: int = 256) -> None:
        self._queue_size = queue_size
        self._subscribers: set[asyncio.Queue[Event | None]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.published = 0
        self.closed = False
        #: Set by a PostgreSQL watcher: events reach this hub only while it LISTENs, which it
        #: does only while someone subscribes (see :meth:`ready`).
        self.needs_listener = False
        self.listening = False

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def publish(self, event: Event) -> None:
        """Deliver ``event`` to every subscriber (thread-safe)."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._publish(event)
        else:
            with contextlib.suppress(RuntimeError):  # loop shut down meanwhile
                loop.call_soon_threadsafe(self._publish, event)

    def _publish(self, event: Event) -> None:
        self.published += 1
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("dropping a live-update subscriber that stopped reading")
                self._subscribers.discard(queue)
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                queue.put_nowait(None)

    def attach(self) -> asyncio.Queue[Event | None]:
        """Register a subscriber on the running loop; pair with :meth:`detach`.

        The SSE endpoint attaches before it sends the response headers, so nothing committed
        after the browser sees the stream open can be missed.
        """
        self.loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=self._queue_size)
        if self.closed:  # shutting down: the stream ends at once
            queue.put_nowait(None)
            return queue
        self._subscribers.add(queue)
        return queue

    async def ready(self, *, timeout: float = 5.0) -> bool:
        """Wait until events committed from now on will reach the subscribers (on PostgreSQL:
        until the watcher LISTENs; at once on SQLite). False when that took over ``timeout``
        (database unreachable: the stream opens anyway and catches up once it listens)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.needs_listener and not self.listening:
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def detach(self, queue: asyncio.Queue[Event | None]) -> None:
        self._subscribers.discard(queue)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Event | None]]:
        """A queue of events for one subscriber; ``None`` in it means "you were dropped"."""
        queue = self.attach()
        try:
            yield queue
        finally:
            self.detach(queue)

    def close(self) -> None:
        """Tell every subscriber to finish, and refuse new ones (server shutdown)."""
        self.closed = True
        for queue in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
        self._subscribers.clear()
