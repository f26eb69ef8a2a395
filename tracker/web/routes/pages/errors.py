"""Error pages: browsers get a readable page, JSON callers keep JSON errors."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from tracker.web import auth
from tracker.web.templating import render

log = logging.getLogger(__name__)

_HEADINGS = {
    400: "That request did not make sense",
    401: "Please sign in",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    429: "Too many attempts",
}


def wants_html(request: Request) -> bool:
    if request.url.path.startswith("/api/") or request.url.path == "/events":
        return False
    accept = request.headers.get("accept", "")
    return "text/html" in accept or request.method == "POST"


def error_page(request: Request, status_code: int, message: str) -> Response:
    log.info("%s %s answered %s: %s", request.method, request.url.path, status_code, message)
    user = auth.current_user(request) if status_code != 500 else None
    return render(
        request,
        "error.html",
        {
            "title": _HEADINGS.get(status_code, "Error"),
            "heading": _HEADINGS.get(status_code, "Something went wrong"),
            "message": message,
            "reference": "",
        },
        status_code=status_code,
        user=user,
    )


def validation_message(exc: RequestValidationError) -> str:
    """What was wrong, by field and rule ("holder: String should have at most 100
    characters"), never the value sent (it may be long, hostile or a password)."""
    problems = []
    for err in exc.errors()[:5]:
        field = next((str(p) for p in reversed(err.get("loc", ())) if isinstance(p, str)), "")
        rule = str(err.get("msg", "invalid"))
        problems.append(f"{field}: {rule}" if field else rule)
    detail = "; ".join(dict.fromkeys(problems))
    return "Some of the values sent were not valid" + (f" ({detail})" if detail else "") + (
        ". Go back, correct them and send again."
    )


def server_error_page(request: Request, exc: BaseException) -> Response:
    """Log the detail with a reference the operator can quote; show only the reference."""
    reference = secrets.token_hex(4)
    log.error(
        "unhandled error on %s %s (ref %s)",
        request.method,
        request.url.path,
        reference,
        exc_info=exc,
    )
    return render(
        request,
        "error.html",
        {
            "title": "Error",
            "heading": "Something went wrong on our side",
            "message": "The error was logged. Try again; if it keeps happening, tell an admin.",
            "reference": reference,
        },
        status_code=500,
    )


class PageRoute(APIRoute):
    """Routes of this router answer errors with a readable page instead of JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except StarletteHTTPException as exc:
                if exc.status_code < 400 or not wants_html(request):
                    raise
                if exc.status_code >= 500:
                    log.error("HTTP %s on %s: %s", exc.status_code, request.url.path, exc.detail)
                return error_page(request, exc.status_code, str(exc.detail))
            except RequestValidationError as exc:
                if not wants_html(request):
                    raise
                log.info("bad request to %s: %s", request.url.path, exc.errors())
                return error_page(request, 400, validation_message(exc))
            except Exception as exc:
                if not wants_html(request):
                    raise
                return server_error_page(request, exc)

        return handler


def install_error_pages(app: Any) -> None:
    """Friendly 404/403/500 pages for browsers on every URL (``create_app`` calls this).

    JSON callers (``/api/...``, anything not asking for HTML) keep FastAPI's JSON errors.
    """
    from fastapi.exception_handlers import http_exception_handler

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code >= 400 and wants_html(request):
            message = (
                "There is no page at this address." if exc.status_code == 404 else str(exc.detail)
            )
            return error_page(request, exc.status_code, message)
        return await http_exception_handler(request, exc)

    async def on_error(request: Request, exc: Exception) -> Response:
        if wants_html(request):
            return server_error_page(request, exc)
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal error; see the tracker log"}, status_code=500)

    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_error)
