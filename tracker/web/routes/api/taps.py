"""Taps: the station ingest (``POST /api/v1/taps``) and the operator's list and exports.

Ingest answers:

* 201 ``{"tap": …, "created": true}`` stored;
* 200 ``{"tap": …, "created": false}`` this station already stored that idempotency key;
* 409 ``{"detail": {"reason": "counter_not_increasing", "last_counter": n}}`` replay, lost race,
  or the key belongs to another station;
* 403 ``{"detail": {"reason": "card_blocked"}}`` accepted tap on a blocked card;
* 401 bad or missing token; 422 invalid body (field reasons).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import JSONResponse
from sqlmodel import SQLModel

from tracker.db import SessionDep
from tracker.models import Page, StationPublic, TapCreate, TapPublic
from tracker.services import taps as tap_service
from tracker.services.taps import TapRecorder
from tracker.web.deps import ListDep, ViewerDep, one_page, station_of, tap_recorder
from tracker.web.routes.api.exports import add_export_routes

router = APIRouter(prefix="/api/v1", tags=["taps"])


class TapAnswer(SQLModel):
    tap: TapPublic
    created: bool


@router.post(
    "/taps",
    response_model=TapAnswer,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": TapAnswer, "description": "already stored by this station (a retry)"},
        401: {"description": "missing or unknown station token"},
        403: {"description": "card_blocked"},
        409: {"description": "counter_not_increasing (replay, lost race or foreign key)"},
    },
    summary="Report a tap (stations)",
)
async def post_tap(body: TapCreate, request: Request) -> Response:
    """Store a tap reported by a station. Idempotent per station on ``idempotency_key``
    (``"<UID>:<counter>"`` for accepted taps, ``"<station>:<uuid4>"`` for refused ones).

    In the app, well-formed reports are answered by :mod:`tracker.web.tap_lane` before
    routing, with the same :func:`tap_answer`; this route answers the rest."""
    return await tap_answer(tap_recorder(request), await station_of(request), body)


async def tap_answer(recorder: TapRecorder, station: StationPublic, tap: TapCreate) -> Response:
    """Record ``tap`` for ``station``: 201 stored, 200 a retry of a stored tap, 409 a replay
    (or lost race, or another station's key), 403 a blocked card. Busy and unexpected errors
    propagate (503 / 500 by the app's handlers)."""
    try:
        stored, created = await recorder.record_async(
            tap, station_name=station.name, station_id=station.id
        )
    except tap_service.CounterConflict as exc:
        detail = {"reason": "counter_not_increasing", "last_counter": exc.last_counter}
        return JSONResponse({"detail": detail}, status_code=status.HTTP_409_CONFLICT)
    except tap_service.CardBlocked:
        return JSONResponse(
            {"detail": {"reason": "card_blocked"}}, status_code=status.HTTP_403_FORBIDDEN
        )
    answer = TapAnswer(tap=stored, created=created)
    return Response(
        content=answer.model_dump_json(),
        media_type="application/json",
        status_code=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
    )


@router.get("/taps", response_model=Page[TapPublic], summary="Taps, filtered")
def get_taps(
    request: Request,
    session: SessionDep,
    _user: ViewerDep,
    params: ListDep,
    cursor: str | None = None,
    limit: Annotated[int | None, Query(ge=1)] = None,
) -> Page[TapPublic]:
    """Newest first unless ``sort``/``dir`` say otherwise (time, counter, outcome).
    Filters: outcome, card, station, since/until, q."""
    flt = params.for_list("taps")
    return one_page(tap_service.list_taps, request, session, flt=flt, cursor=cursor, limit=limit)


add_export_routes(router, "taps")
