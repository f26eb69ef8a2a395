"""Stations tell the tracker about the cards they program: ``station card provision`` registers
a card after its read-back and SUN check, ``station card wipe`` marks it wiped.

    POST /api/v1/cards/register     {uid, card_id?, alias?}   → 201 new, 200 known (station)
    POST /api/v1/cards/{uid}/wiped                            → 200, 404 unknown card (station)

A wiped card that is provisioned again is active again; an alias an operator already gave is
kept. Station token as on ``POST /api/v1/taps``.
"""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from pydantic import Field

from tracker.db import SessionDep
from tracker.models import CardPublic
from tracker.models.checks import CheckedInput
from tracker.services import cards as card_service
from tracker.web.deps import StationDep, not_found, uid_or_422

router = APIRouter(prefix="/api/v1", tags=["cards"])


class CardRegistration(CheckedInput):
    uid: str = Field(min_length=8, max_length=20)
    card_id: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{32}$")
    alias: str | None = Field(default=None, max_length=100)


@router.post(
    "/cards/register", response_model=CardPublic, status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "the card was known: updated"}},
    summary="Register a card a station has just programmed (stations)",
)
def register_card(
    body: CardRegistration, response: Response, station: StationDep, session: SessionDep
) -> CardPublic:
    card, created = card_service.register_card(
        session, uid=uid_or_422(body.uid), card_id=body.card_id, alias=body.alias
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return card


@router.post(
    "/cards/{uid}/wiped", response_model=CardPublic,
    summary="Mark a card wiped after a station restored its factory state (stations)",
)
def card_wiped(uid: str, station: StationDep, session: SessionDep) -> CardPublic:
    try:
        return card_service.mark_wiped(session, uid=uid_or_422(uid))
    except card_service.CardNotFound:
        raise not_found("card_not_found", f"no card {uid}") from None
