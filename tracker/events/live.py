"""Live updates wired into an app: one hub and its watcher per app, started with it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from tracker.events.hub import EventHub
from tracker.events.watcher import Watcher

log = logging.getLogger(__name__)


class LiveUpdates:
    """The hub and its watcher task for one app, started lazily on the running loop."""

    def __init__(self, app: Any, *, interval: float = 0.3) -> None:
        self.app = app
        self.interval = interval
        self.hub = EventHub()
        self._task: asyncio.Task[None] | None = None

    def ensure_started(self) -> EventHub:
        loop = asyncio.get_running_loop()
        if self._task is not None and not self._task.done() and self.hub.loop is loop:
            return self.hub
        if self._task is not None and not self._task.done():
            self._task.cancel()  # a previous loop (test clients) - start afresh on this one
        self.hub.loop = loop
        self.hub.closed = False
        state = self.app.state
        watcher = Watcher(
            self.hub,
            state.engine,
            database_url=state.settings.database_url,
            interval=self.interval,
            database=state.database,
        )
        self._task = loop.create_task(_supervise(watcher.run), name="tracker-live-updates")
        return self.hub

    async def stop(self) -> None:
        self.hub.close()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _supervise(run: Callable[[], Any]) -> None:
    try:
        await run()
    except asyncio.CancelledError:
        raise
    except Exception:  # a bug must not silently end live updates without a trace
        log.exception("live-update watcher crashed; pages will stop updating until restart")
        raise


def live_updates(app: Any) -> LiveUpdates:
    """The app's :class:`LiveUpdates` (``create_app`` builds it)."""
    return app.state.live_updates  # type: ignore[no-any-return]


def install(app: Any) -> None:
    """Start the hub with the app and stop it on shutdown (``create_app`` calls this).

    Wraps the app's existing lifespan, so its other startup/shutdown work keeps running.
    """
    previous = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(inner_app: Any) -> AsyncIterator[Any]:
        async with previous(inner_app) as state:
            live = live_updates(app)
            hub = live.ensure_started()
            restore = _end_streams_on_shutdown_signal(hub)
            try:
                yield state
            finally:
                restore()
                await live.stop()

    app.router.lifespan_context = lifespan


def _end_streams_on_shutdown_signal(hub: EventHub) -> Callable[[], None]:
    """Close the SSE streams as soon as SIGINT/SIGTERM arrives.

    Why: uvicorn waits for open responses to finish before it runs the lifespan shutdown, and
    an SSE stream never finishes by itself - one open dashboard would stop the tracker from
    exiting. We chain onto the server's own handler (only possible in the main thread).
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    installed: dict[int, Any] = {}

    def chain(previous: Callable[[int, Any], Any]) -> Callable[[int, Any], None]:
        def handler(signum: int, frame: Any) -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(hub.close)
            previous(signum, frame)

        return handler

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(sig)
        if callable(previous):
            ours = chain(previous)
            signal.signal(sig, ours)
            installed[sig] = (previous, ours)

    def restore() -> None:
        for sig, (previous, ours) in installed.items():
            if signal.getsignal(sig) is ours:
                signal.signal(sig, previous)

    return restore
