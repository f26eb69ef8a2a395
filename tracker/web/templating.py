"""The one Jinja2 environment of the operator pages, with autoescaping always on.

Why a module of its own: both the login routes (auth) and the pages render templates, and both
must get the same escaping rules and the same context (signed-in user, CSRF token).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    pass_context,
    select_autoescape,
)
from markupsafe import Markup

from tracker import labels

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"

STATE_BADGES = {
    "AwaitingApproval": "pending",
    "AwaitingPayment": "pending",
    "InProgress": "progress",
    "Completed": "ok",
    "Cancelled": "bad",
    "Failed": "bad",
}


def _fmt_time(value: Any, zone: tzinfo = UTC) -> str:
    """In the operator's zone, to the second; the full ISO value goes in the title."""
    if value is None:
        return "—"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


@pass_context
def _time_filter(ctx: Any, value: Any) -> str:
    return _fmt_time(value, ctx.get("tz") or UTC)


@pass_context
def _time_cell(ctx: Any, value: Any) -> Markup:
    """The time for a table cell: date and clock may go on two lines (a phone), never
    breaking inside either at a hyphen or colon."""
    text = _fmt_time(value, ctx.get("tz") or UTC)
    date, sep, clock = text.partition(" ")
    if not sep:
        return Markup("<span class='nw'>{}</span>").format(text)
    return Markup("<span class='nw'>{}</span> <span class='nw'>{}</span>").format(date, clock)


def _fmt_sats(value: Any) -> str:
    if value is None:
        return "—"
    try:
        return f"{int(value):,}".replace(",", "\u202f")
    except (TypeError, ValueError):
        return str(value)


def _badge(state: Any) -> Markup:
    name = str(getattr(state, "value", state) or "unknown")
    kind = STATE_BADGES.get(name, "neutral")
    # A soft break between words ("Awaiting<wbr>Approval") lets the badge fit a phone column.
    words = re.split(r"(?=[A-Z])", name)
    label = Markup("<wbr>").join(w for w in words if w)
    return Markup("<span class='badge badge-{}' data-state='{}'>{}</span>").format(
        kind, name, label
    )


def _query(params: dict[str, Any], **changes: Any) -> str:
    """The current filter query string with some values replaced (pagination, export links)."""
    merged = {**params, **changes}
    return urlencode({k: v for k, v in merged.items() if v not in (None, "")})


def _build_env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["time"] = _time_filter
    env.filters["time_cell"] = _time_cell
    env.filters["sats"] = _fmt_sats
    env.filters["badge"] = _badge
    env.filters["short_hex"] = labels.short_hex
    env.globals["query"] = _query
    return env


ENV = _build_env()


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    user: Any = None,
) -> HTMLResponse:
    """Render ``name`` with the signed-in user, the CSRF token every form needs and the
    operator's time zone (``tz``, ``tz_name``) that every time on the page is shown in."""
    from tracker.web.zone import operator_zone  # auth (below zone) renders templates too

    zone = operator_zone(request) if user is not None else UTC
    ctx: dict[str, Any] = {
        "tz": zone,
        "tz_name": getattr(zone, "key", "UTC"),
        "request": request,
        "user": user,
        "csrf_token": getattr(user, "csrf", "") if user is not None else "",
        "title": "",
        "flash": request.query_params.get("msg", ""),
    }
    ctx.update(context or {})
    html = ENV.get_template(name).render(ctx)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


# No inline script anywhere, so a strict policy costs nothing and blunts any escaping slip.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
