"""``GET /api/v1/<kind>/export.csv`` and ``.json``: every row the list filters select, streamed."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from tracker.services import export as export_service
from tracker.services.filters import ListFilter
from tracker.web.deps import ListDep, ViewerDep

_EXPORTS = {
    ("taps", "csv"): export_service.taps_csv,
    ("taps", "json"): export_service.taps_json,
    ("payouts", "csv"): export_service.payouts_csv,
    ("payouts", "json"): export_service.payouts_json,
}
_MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


def add_export_routes(router: APIRouter, kind: str) -> None:
    """Register the two exports of ``kind`` on ``router`` (call it before any
    ``/<kind>/{id}`` route, which would otherwise catch ``export.csv``)."""
    for fmt in ("csv", "json"):
        router.add_api_route(
            f"/{kind}/export.{fmt}",
            _endpoint(kind, fmt),
            methods=["GET"],
            name=f"export_{kind}_{fmt}",
            summary=f"Export filtered {kind} as {fmt.upper()} (streamed)",
        )


def _endpoint(kind: str, fmt: str) -> Callable[..., StreamingResponse]:
    def export(request: Request, _user: ViewerDep, params: ListDep) -> StreamingResponse:
        return _export(request, kind, fmt, params.for_list(kind))

    return export


def _export(request: Request, kind: str, fmt: str, flt: ListFilter) -> StreamingResponse:
    """Stream every row matching ``flt`` as a download named ``<kind>.<fmt>``."""
    body = _EXPORTS[kind, fmt](request.app.state.engine, flt=flt)
    return StreamingResponse(
        body,
        media_type=_MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{kind}.{fmt}"'},
    )
