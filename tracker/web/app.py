"""The application factory: ``create_app(settings) -> FastAPI``.

Everything a request needs hangs off ``app.state``: ``settings``, ``database`` (the
:class:`~tracker.db.Database`: engine, sessions, write lock, async pools, station memos),
``engine`` and ``sessionmaker`` (its parts), ``tap_recorder`` (the one way a tap is
stored) and ``live_updates`` (hub and watcher). Nothing is created at import time, so tests
and several processes can build as many apps as they like. The app refuses to start against
a database that is not at the Alembic head, with a message saying to run
``tracker db upgrade``.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any, cast

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tracker import events
from tracker.db import Database, DatabaseBusy, check_schema_current, is_busy, make_engine
from tracker.issuers.secrets import SecretBox
from tracker.services.taps import TapRecorder
from tracker.settings import TrackerSettings
from tracker.web import answers, apidocs, background
from tracker.web.deps import check_request_text
from tracker.web.limits import RequestGate
from tracker.web.routes import api, metrics, pages, webhooks
from tracker.web.routes.pages.errors import error_page, validation_message, wants_html
from tracker.web.tap_lane import TapLane

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"

API_DESCRIPTION = """\
JSON API of the Bolt Card tracker.

* **Stations** authenticate with `Authorization: Bearer <station token>` (from
  `tracker stations add NAME`; shown once, only its SHA-256 is stored) and post taps to
  `POST /api/v1/taps` and claims to `POST /api/v1/payouts`.
* **Operators** authenticate with the session cookie from `/login` (viewer: read; admin: edit
  cards). Cookie-authenticated writes also need the `X-CSRF-Token` header.
* Lists are newest first with keyset pagination: pass `next_cursor` back as `cursor`.
* Exports (`/export.csv`, `/export.json`) take the same filters as the lists and stream.
"""


def create_app(settings: TrackerSettings, *, engine: Engine | None = None) -> FastAPI:
    """Build the app for ``settings``; pass ``engine`` to share one (tests, benchmarks)."""
    engine = engine or make_engine(settings)
    if settings.check_migrations:
        check_schema_current(engine)

    app = FastAPI(
        dependencies=[Depends(check_request_text)],
        title="Bolt Card tracker",
        description=API_DESCRIPTION,
        version="1",
        docs_url=None,  # served by tracker.web.apidocs, from the package, under our CSP
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    database = Database(engine, write_wait_s=settings.sqlite_busy_timeout_ms / 1000)
    app.state.settings = settings
    app.state.database = database
    app.state.engine = engine
    app.state.sessionmaker = database.sessions
    recorder = app.state.tap_recorder = TapRecorder(database)
    app.state.live_updates = events.LiveUpdates(app)

    async def close_async_pools() -> None:
        database.close_async_pools()  # this loop's async ingest connections
        recorder.close()

    app.router.add_event_handler("shutdown", close_async_pools)
    app.state.secret_box = SecretBox.from_settings(settings)
    background.install(app)
    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    apidocs.install(app, openapi_url="/api/openapi.json")
    app.include_router(api.router)
    app.include_router(webhooks.router)
    app.include_router(pages.router)
    pages.install_error_pages(app)
    _install_error_handlers(app)
    if settings.live_updates:
        events.install(app)
    app.add_middleware(TapLane, fastapi_app=app)  # inside the gate: token and limit first
    app.add_middleware(RequestGate, fastapi_app=app)
    metrics.install(app)  # outermost: its latencies include the gate's work
    return app


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` / several workers: each worker process builds its own
    settings (from ``TRACKER_*`` / ``TRACKER_CONFIG``) and engine."""
    from tracker.settings import load_settings

    return create_app(load_settings())


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _install_error_handlers(app: FastAPI) -> None:
    """Friendly JSON errors under /api; other paths fall back to the pages' own handling.

    Unexpected errors are logged with a reference id that the answer repeats, so an operator
    can quote it; the answer itself carries no internals.
    """
    page_handler = app.exception_handlers.get(Exception)  # the error pages' (install_error_pages)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        ref, body = answers.internal_error(request.method, request.url.path)
        if _is_api(request) or page_handler is None:
            if _is_api(request):
                return JSONResponse(body, status_code=500)
            return PlainTextResponse(
                f"Internal error (reference {ref}); the tracker log has details.",
                status_code=500,
            )
        response = await cast(Any, page_handler)(request, exc)
        return cast(Response, response)

    async def busy_or_unexpected(request: Request, exc: Exception) -> Response:
        """SQLite's write lock held elsewhere: 503 with Retry-After, never a 500."""
        if not is_busy(exc):
            return await unexpected(request, exc)
        log.warning("database busy on %s %s: answered 503", request.method, request.url.path)
        status, body, headers = answers.busy()
        if not _is_api(request) and wants_html(request):
            page = error_page(request, status, "The database is busy; try again in a moment.")
            page.headers.update(headers)
            return page
        return JSONResponse(body, status_code=status, headers=headers)

    for busy_type in (DatabaseBusy, sqlite3.OperationalError, OperationalError):
        app.add_exception_handler(busy_type, busy_or_unexpected)

    previous_http = app.exception_handlers.get(StarletteHTTPException)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if _is_api(request) or previous_http is None:
            headers: Any = getattr(exc, "headers", None)
            return JSONResponse(
                {"detail": exc.detail}, status_code=exc.status_code, headers=headers
            )
        response = await cast(Any, previous_http)(request, exc)
        return cast(Response, response)

    previous_validation = app.exception_handlers.get(RequestValidationError)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        if not _is_api(request) and wants_html(request):
            # Routes outside the pages' router (the sign-in form) get the same readable 400.
            log.info("bad request to %s: %s", request.url.path, exc.errors())
            return error_page(request, 400, validation_message(exc))
        if _is_api(request) or previous_validation is None:
            errors = [
                {
                    "field": ".".join(str(p) for p in err.get("loc", ()) if p != "body"),
                    "reason": err.get("msg", "invalid"),
                    "type": err.get("type", "value_error"),
                }
                for err in exc.errors()
            ]
            return JSONResponse({"detail": errors}, status_code=422)
        response = await cast(Any, previous_validation)(request, exc)
        return cast(Response, response)
