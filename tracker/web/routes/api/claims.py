"""Claims: stations report their LNURL-withdraw charges; operators read one.

``POST /api/v1/claims`` (station token, like ``POST /api/v1/taps``), idempotent by
``claim_id``: 201 ``{"claim": …, "created": true}`` stored; 200 ``{"claim": …, "created":
false}`` already stored (its state moved on when the post carried a newer one; a final state
never moves); 401 bad token; 422 invalid body, or ``tap_key`` is not an accepted tap of this
station.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status
from sqlmodel import SQLModel

from tracker.db import SessionDep
from tracker.models import ClaimCreate, ClaimPublic
from tracker.services import claims as claim_service
from tracker.web.deps import StationDep, ViewerDep, not_found

router = APIRouter(prefix="/api/v1", tags=["claims"])


class ClaimAnswer(SQLModel):
    claim: ClaimPublic
    created: bool


@router.post(
    "/claims",
    response_model=ClaimAnswer,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": ClaimAnswer, "description": "already stored (state updated if newer)"},
        401: {"description": "missing or unknown station token"},
        422: {"description": "invalid body, or tap_key is not an accepted tap of this station"},
    },
    summary="Report a claim or its new state (stations)",
)
def post_claim(
    body: ClaimCreate, response: Response, station: StationDep, session: SessionDep
) -> ClaimAnswer:
    try:
        claim, created = claim_service.record_claim(session, station_id=station.id, claim=body)
    except claim_service.ClaimRejected as exc:
        raise HTTPException(
            status_code=422,
            detail=[{"field": exc.field, "reason": str(exc), "type": "value_error"}],
        ) from None
    if not created:
        response.status_code = status.HTTP_200_OK
    return ClaimAnswer(claim=claim, created=created)


@router.get("/claims/{claim_id}", response_model=ClaimPublic, summary="One claim (operators)")
def get_claim(claim_id: str, session: SessionDep, _user: ViewerDep) -> ClaimPublic:
    try:
        return claim_service.get_claim(session, claim_id=claim_id)
    except claim_service.ClaimNotFound:
        raise not_found("claim_not_found", f"no claim {claim_id}") from None
