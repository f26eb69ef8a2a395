"""The audit log page (admins only): who did what, when, from where; filters by actor,
action and dates in the operator's zone; paged; exports of exactly what is filtered."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tracker.db import SessionDep
from tracker.models import AuditEventPublic
from tracker.models.checks import check_moment
from tracker.services import audit
from tracker.services.filters import InvalidCursor
from tracker.web.auth import Admin
from tracker.web.routes.pages.errors import PageRoute
from tracker.web.routes.pages.listing import PAGE_SIZE, parse_moment
from tracker.web.templating import render
from tracker.web.zone import operator_zone

router = APIRouter(route_class=PageRoute, include_in_schema=False)
_KEYS = ("actor", "action", "since", "until")


@router.get("/audit")
def audit_page(request: Request, session: SessionDep, user: Admin) -> Response:
    raw = {k: request.query_params.get(k, "").strip()[:120] for k in _KEYS}
    errors: list[str] = []
    action = raw["action"] or None
    if action is not None and action not in audit.ACTIONS:
        errors.append(f"Unknown action {action!r}.")
        action = None
    zone = operator_zone(request)
    moments: dict[str, datetime | None] = {"since": None, "until": None}
    for key, end in (("since", False), ("until", True)):
        if raw[key]:
            try:
                moments[key] = check_moment(parse_moment(raw[key], end_of_day=end, zone=zone))
            except (ValueError, OverflowError):
                errors.append(
                    f"{key.capitalize()} must be a date like 2026-11-26, between 1970 and 2099."
                )
    flt = audit.AuditFilter(
        actor=raw["actor"] or None, action=action, since=moments["since"], until=moments["until"]
    )
    cursor = request.query_params.get("cursor") or None
    items: list[AuditEventPublic] = []
    next_cursor = None
    if not errors:
        try:
            items, next_cursor = audit.list_events(
                session, flt=flt, cursor=cursor, limit=PAGE_SIZE
            )
        except InvalidCursor as exc:
            errors.append(str(exc))
    api = {
        k: v for k, v in (
            ("actor", flt.actor),
            ("action", flt.action),
            ("since", flt.since.isoformat() if flt.since else None),
            ("until", flt.until.isoformat() if flt.until else None),
        ) if v
    }
    suffix = f"?{urlencode(api)}" if api else ""
    return render(
        request,
        "audit.html",
        {
            "title": "Audit log",
            "items": items,
            "filters": {k: v for k, v in raw.items() if v},
            "errors": errors,
            "next_cursor": next_cursor,
            "first_page": cursor is None,
            "actions": audit.ACTIONS,
            "actors": audit.actors(session),
            "export": {
                "csv": f"/api/v1/audit/export.csv{suffix}",
                "json": f"/api/v1/audit/export.json{suffix}",
            },
        },
        user=user,
        status_code=400 if errors else 200,
    )
