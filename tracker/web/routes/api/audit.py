"""``GET /api/v1/audit``: the audit log of operator actions, for admins only (a viewer gets
403), with the same filters as the ``/audit`` page and CSV / JSON exports."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from tracker.db import SessionDep
from tracker.models import AuditEventPublic, Page
from tracker.services import audit
from tracker.web.auth import CurrentUser, require_admin
from tracker.web.deps import Moment, one_page

router = APIRouter(prefix="/api/v1", tags=["audit"])
AdminDep = Annotated[CurrentUser, Depends(require_admin)]


def _invalid(field: str, reason: str) -> HTTPException:
    return HTTPException(
        status_code=422, detail=[{"field": field, "reason": reason, "type": "value_error"}]
    )


class AuditParams:
    """The filters of the audit log: actor, action, ``since`` (inclusive) and ``until``
    (exclusive) as ISO 8601 moments."""

    def __init__(
        self,
        actor: Annotated[str | None, Query(max_length=120)] = None,
        action: Annotated[str | None, Query(max_length=48)] = None,
        since: Annotated[Moment, Query(description="from (inclusive, ISO 8601)")] = None,
        until: Annotated[Moment, Query(description="to (exclusive, ISO 8601)")] = None,
    ) -> None:
        if action and action not in audit.ACTIONS:
            raise _invalid("action", "unknown action; one of " + ", ".join(audit.ACTIONS))
        self.filter = audit.AuditFilter(
            actor=actor or None, action=action or None, since=since, until=until
        )


AuditDep = Annotated[AuditParams, Depends()]


@router.get("/audit", response_model=Page[AuditEventPublic], summary="The audit log (admins)")
def get_audit(
    request: Request,
    session: SessionDep,
    _admin: AdminDep,
    params: AuditDep,
    cursor: str | None = None,
    limit: Annotated[int | None, Query(ge=1)] = None,
) -> Page[AuditEventPublic]:
    """Newest first; pass ``next_cursor`` back as ``cursor`` for the next page."""
    return one_page(
        audit.list_events, request, session, flt=params.filter, cursor=cursor, limit=limit
    )


@router.get("/audit/export.csv", summary="Export the filtered audit log as CSV (admins)")
def export_audit_csv(request: Request, _admin: AdminDep, params: AuditDep) -> StreamingResponse:
    return StreamingResponse(
        audit.events_csv(request.app.state.engine, flt=params.filter),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
    )


@router.get("/audit/export.json", summary="Export the filtered audit log as JSON (admins)")
def export_audit_json(request: Request, _admin: AdminDep, params: AuditDep) -> StreamingResponse:
    return StreamingResponse(
        audit.events_json(request.app.state.engine, flt=params.filter),
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="audit.json"'},
    )
