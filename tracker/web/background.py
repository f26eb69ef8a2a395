"""What the app runs besides requests: the Greenfield HTTP clients it shares, the webhook
queue worker (pending deliveries of a burst), and the reconcile loop (every
``settings.reconcile_seconds``; 0 = off).

The loop runs in every process that serves the app; passes are idempotent, so several
workers reconciling at once cost requests, not correctness. A failing issuer is logged and
retried on the next pass; it never stops the loop or the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import httpx
from fastapi import FastAPI

from tracker.db import Database
from tracker.issuers.btcpay.client import GreenfieldError
from tracker.issuers.secrets import SecretBox, SecretUnreadable
from tracker.services import issuers as issuer_service
from tracker.services import webhook_queue
from tracker.services.reconcile import reconcile_all

log = logging.getLogger(__name__)


async def reconcile_once(
    database: Database, box: SecretBox, http: httpx.AsyncClient, *, grace_s: int
) -> list[dict[str, object]]:
    """One pass over every issuer; a failing issuer is reported, the others still run.
    Open claims older than ``grace_s`` with no issuer payout are settled (Failed/Unknown)."""

    def load() -> list[issuer_service.IssuerRecord]:
        with database.sessions() as session:
            return issuer_service.all_issuers(session, box)

    return await reconcile_all(database, http, await database.call(load), grace_s=grace_s)


async def _loop(app: FastAPI, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            await reconcile_once(
                app.state.database, app.state.secret_box, app.state.issuer_http,
                grace_s=app.state.settings.claim_grace_seconds,
            )
        except SecretUnreadable as exc:
            log.error("reconcile: %s", exc)
        except Exception:
            log.exception("reconcile pass failed; retrying in %.0f s", every_s)


def issuer_http_client(timeout_s: float) -> httpx.AsyncClient:
    """The HTTP client for Greenfield calls: no redirects (a key must not follow one)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
        limits=httpx.Limits(max_connections=50, max_keepalive_connections=50),
    )


def issuer_http_blocking(timeout_s: float) -> httpx.Client:
    """The same, blocking: the webhook fetches one payout from a worker thread with it
    (thread-safe pool; about half the CPU per request of the async client on loopback)."""
    return httpx.Client(
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
        limits=httpx.Limits(max_connections=50, max_keepalive_connections=50),
    )


async def _queue_loop(app: FastAPI, wake: asyncio.Event) -> None:
    """Drain the pending webhook deliveries: at start (a restart finds what a crash left),
    when the route queues one, and every few seconds; back off while BTCPay is unreadable.

    Queued deliveries gather for up to :data:`GATHER_S` until they are many enough to list
    the store, so a burst is fetched in a few large passes (one Greenfield list each) rather
    than many small ones; a lone delivery never waits here, the route handles it inline."""
    database: Database = app.state.database
    pause = 1.0
    cached: tuple[float, dict[int, issuer_service.IssuerRecord]] = (0.0, {})

    async def issuers() -> dict[int, issuer_service.IssuerRecord]:
        nonlocal cached
        if time.monotonic() - cached[0] > issuer_service.CACHE_SECONDS:

            def load() -> dict[int, issuer_service.IssuerRecord]:
                with database.sessions() as session:
                    box = app.state.secret_box
                    return {i.id: i for i in issuer_service.all_issuers(session, box)}

            cached = (time.monotonic(), await database.call(load))
        return cached[1]

    while True:
        wake.clear()
        try:
            settled, deferred = await webhook_queue.drain(
                database, app.state.issuer_http, issuers, gather_s=GATHER_S
            )
            pause = 1.0
            if deferred:
                await asyncio.sleep(0.05)
            if settled or deferred:
                continue
        except GreenfieldError as exc:
            log.warning("webhook queue: %s; retrying in %.0f s", exc, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 60.0)
            continue
        except SecretUnreadable as exc:
            log.error("webhook queue: %s", exc)
        except Exception:
            log.exception("webhook queue pass failed; retrying")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=5.0)


#: How long queued deliveries may gather before a pass (see :func:`_queue_loop`).
GATHER_S = 0.3


def install(app: FastAPI) -> None:
    settings = app.state.settings
    tasks: list[asyncio.Task[None]] = []

    async def start() -> None:
        app.state.issuer_http = issuer_http_client(settings.issuer_timeout_s)
        app.state.issuer_http_blocking = issuer_http_blocking(settings.issuer_timeout_s)
        app.state.webhook_inflight = 0
        app.state.webhook_queued_at = float("-inf")
        app.state.webhook_wake = asyncio.Event()
        app.state.pending_writer = webhook_queue.PendingWriter(app.state.database)
        tasks.append(asyncio.create_task(_queue_loop(app, app.state.webhook_wake)))
        if settings.reconcile_seconds > 0:
            tasks.append(asyncio.create_task(_loop(app, float(settings.reconcile_seconds))))

    async def stop() -> None:
        loop = asyncio.get_running_loop()
        for task in tasks:
            task.cancel()
            if task.get_loop() is loop:  # test clients may start and stop on other loops
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        tasks.clear()
        await app.state.issuer_http.aclose()
        app.state.issuer_http_blocking.close()

    app.router.add_event_handler("startup", start)
    app.router.add_event_handler("shutdown", stop)
