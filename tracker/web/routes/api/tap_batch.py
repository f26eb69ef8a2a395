"""``POST /api/v1/taps/batch``: up to 500 tap reports in one request, each with its own answer.

For a station catching up after an outage: one request instead of hundreds. Same token, same
body limit, same exactly-once rules as ``POST /api/v1/taps`` (see
:mod:`tracker.services.taps.batch`). Answers 200 ``{"results": [{"status", "created",
"tap_id" | "detail"}, …], "complete": bool}``; 401 bad token; 413 body too large; 422 when the
body is not ``{"taps": [...]}`` of at most 500 items; 503 + ``Retry-After`` when the database
is busy before the first report.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request, Response
from pydantic import Field
from sqlmodel import SQLModel

from tracker.services.taps.batch import MAX_BATCH, record_batch
from tracker.web.deps import station_of, tap_recorder

router = APIRouter(prefix="/api/v1", tags=["taps"])


class TapBatch(SQLModel):
    #: Each item is checked on its own (a bad one gets its own 422, the others are stored).
    taps: list[Any] = Field(min_length=1, max_length=MAX_BATCH)


@router.post(
    "/taps/batch",
    responses={
        200: {"description": "one result per report, in order"},
        401: {"description": "missing or unknown station token"},
        413: {"description": "body too large"},
        503: {"description": "database busy; retry after Retry-After seconds"},
    },
    summary="Report many taps (stations catching up)",
)
async def post_tap_batch(body: TapBatch, request: Request) -> Response:
    """Store up to 500 taps in order; each result is what ``POST /api/v1/taps`` would answer
    for that report (201, 200, 409, 403, 422)."""
    station = await station_of(request)
    recorder = tap_recorder(request)

    def work() -> Any:
        return record_batch(recorder, body.taps, station_name=station.name,
                            station_id=station.id)

    answer = await anyio.to_thread.run_sync(work)
    return Response(content=json.dumps(asdict(answer), separators=(",", ":")),
                    media_type="application/json")
