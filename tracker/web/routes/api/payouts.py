"""Payouts: stations report and update claims; operators list, export and read them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from sqlmodel import SQLModel

from tracker.db import SessionDep
from tracker.models import Page, PayoutCreate, PayoutDetail, PayoutPublic, PayoutUpdate
from tracker.services import payouts as payout_service
from tracker.web.deps import (
    DbId,
    ListDep,
    StationDep,
    ViewerDep,
    bearer,
    not_found,
    one_page,
    require_admin_write,
    require_station,
)
from tracker.web.routes.api.exports import add_export_routes

router = APIRouter(prefix="/api/v1", tags=["payouts"])


class PayoutAnswer(SQLModel):
    payout: PayoutPublic
    created: bool


@router.post(
    "/payouts",
    response_model=PayoutAnswer,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": PayoutAnswer, "description": "retry of a stored payout"}},
    summary="Report a claim / payout (stations)",
)
def post_payout(
    body: PayoutCreate, response: Response, station: StationDep, session: SessionDep
) -> PayoutAnswer:
    """Link a claim to its tap (``tap_idempotency_key`` or ``tap_id``) with what the issuer
    answered. ``state`` defaults to ``Unknown``."""
    try:
        payout, created = payout_service.create_payout(session, payout=body, station_id=station.id)
    except payout_service.TapNotFound as exc:
        raise HTTPException(
            status_code=status.HTTP_404_NOT_FOUND,
            detail={"reason": "tap_not_found", "message": str(exc)},
        ) from None
    except payout_service.TapNotYours as exc:
        field = "tap_id" if body.tap_id is not None else "tap_idempotency_key"
        raise HTTPException(
            status_code=422, detail=[{"field": field, "reason": str(exc), "type": "value_error"}]
        ) from None
    except payout_service.PayoutConflict as exc:
        raise HTTPException(
            status_code=status.HTTP_409_CONFLICT,
            detail={"reason": "idempotency_key_conflict", "message": str(exc)},
        ) from None
    if not created:
        response.status_code = status.HTTP_200_OK
    return PayoutAnswer(payout=payout, created=created)


@router.patch(
    "/payouts/{payout_id}",
    response_model=PayoutPublic,
    summary="Change a payout's state or issuer details (its station, or an admin)",
)
def patch_payout(
    payout_id: DbId, body: PayoutUpdate, request: Request, session: SessionDep
) -> PayoutPublic:
    """A state change adds a row to the payout's history (``source`` says who)."""
    station_id: int | None = None
    if bearer(request) is not None:
        station_id = require_station(request, session).id
        if "source" in body.model_fields_set and body.source != "station":
            # Only operators (and the issuer's webhooks) write the other kinds of history.
            raise HTTPException(
                status_code=422,
                detail=[
                    {
                        "field": "source",
                        "reason": "a station's changes are recorded as source 'station'",
                        "type": "value_error",
                    }
                ],
            )
        body.source = "station"
    else:
        require_admin_write(request)
        if "source" not in body.model_fields_set:
            body.source = "operator"
    try:
        return payout_service.update_payout(
            session, payout_id=payout_id, update=body, station_id=station_id
        )
    except payout_service.PayoutNotFound:
        raise not_found("payout_not_found", f"no payout {payout_id}") from None


@router.get("/payouts", response_model=Page[PayoutPublic], summary="Payouts, filtered")
def get_payouts(
    request: Request,
    session: SessionDep,
    _user: ViewerDep,
    params: ListDep,
    cursor: str | None = None,
    limit: Annotated[int | None, Query(ge=1)] = None,
) -> Page[PayoutPublic]:
    """Newest first unless ``sort``/``dir`` say otherwise (time, id, amount, state).
    Filters: state, card, station, since/until, min_sats/max_sats, q."""
    flt = params.for_list("payouts")
    return one_page(
        payout_service.list_payouts, request, session, flt=flt, cursor=cursor, limit=limit
    )


add_export_routes(router, "payouts")  # before /payouts/{payout_id}


@router.get("/payouts/{payout_id}", response_model=PayoutDetail, summary="One payout in full")
def get_payout(payout_id: DbId, session: SessionDep, _user: ViewerDep) -> PayoutDetail:
    try:
        return payout_service.payout_detail(session, payout_id=payout_id)
    except payout_service.PayoutNotFound:
        raise not_found("payout_not_found", f"no payout {payout_id}") from None
