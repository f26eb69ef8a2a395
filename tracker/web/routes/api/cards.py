"""Cards: status for stations, list / detail / edit for operators, a card's taps and payouts."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request

from tracker.db import SessionDep
from tracker.models import (
    CardDetail,
    CardPublic,
    CardStatus,
    CardStatusPublic,
    CardUpdate,
    Page,
    PayoutPublic,
    TapPublic,
)
from tracker.services import cards as card_service
from tracker.services import payouts as payout_service
from tracker.services import taps as tap_service
from tracker.services.filters import ListFilter
from tracker.web.deps import (
    AdminWriteDep,
    PageNumber,
    ViewerDep,
    actor_of,
    not_found,
    one_page,
    page_limit,
    sort_or_422,
    station_or_viewer,
    uid_or_422,
)

router = APIRouter(prefix="/api/v1", tags=["cards"])


@router.get(
    "/cards/{uid}/status",
    response_model=CardStatusPublic,
    summary="Card status for a station (or an operator)",
)
def get_card_status(
    uid: str,
    session: SessionDep,
    _who: Annotated[Any, Depends(station_or_viewer)],
) -> CardStatusPublic:
    """``status`` is active, blocked, wiped, or unknown (never seen)."""
    return card_service.card_status(session, uid=uid_or_422(uid))


@router.get("/cards", response_model=card_service.CardsPage, summary="Cards, with search")
def get_cards(
    request: Request,
    session: SessionDep,
    _user: ViewerDep,
    q: Annotated[str | None, Query(max_length=200)] = None,
    status_: Annotated[CardStatus | None, Query(alias="status")] = None,
    page: PageNumber = 1,
    page_size: Annotated[int | None, Query(ge=1)] = None,
    sort: Annotated[
        str | None,
        Query(max_length=40, description="card, uid, status, counter, first_seen, last_seen"),
    ] = None,
    direction: Annotated[Literal["asc", "desc"] | None, Query(alias="dir")] = None,
) -> card_service.CardsPage:
    """Most recently seen first unless ``sort``/``dir`` say otherwise."""
    return card_service.list_cards(
        session,
        q=q,
        status=status_,
        page=page,
        page_size=page_limit(request, page_size),
        sort=sort_or_422("cards", sort, direction),
    )


@router.get("/cards/{uid}", response_model=CardDetail, summary="One card with totals")
def get_card(uid: str, session: SessionDep, _user: ViewerDep) -> CardDetail:
    try:
        return card_service.card_detail(session, uid=uid_or_422(uid))
    except card_service.CardNotFound as exc:
        raise not_found("card_not_found", str(exc)) from None


@router.patch(
    "/cards/{uid}", response_model=CardPublic, summary="Rename, set holder/notes, block/unblock"
)
def patch_card(
    uid: str, body: CardUpdate, request: Request, session: SessionDep, admin: AdminWriteDep
) -> CardPublic:
    """Changing ``status`` (``blocked`` / ``active``) needs a ``reason`` (422 without one);
    the card then records who blocked it, when and why. Every change is in the audit log."""
    try:
        return card_service.update_card(
            session, uid=uid_or_422(uid), update=body, actor=actor_of(request, admin)
        )
    except card_service.CardNotFound as exc:
        raise not_found("card_not_found", str(exc)) from None


@router.get("/cards/{uid}/taps", response_model=Page[TapPublic], summary="A card's taps")
def get_card_taps(
    uid: str,
    request: Request,
    session: SessionDep,
    _user: ViewerDep,
    cursor: str | None = None,
    limit: Annotated[int | None, Query(ge=1)] = None,
) -> Page[TapPublic]:
    flt = ListFilter(card=uid_or_422(uid))
    return one_page(tap_service.list_taps, request, session, flt=flt, cursor=cursor, limit=limit)


@router.get("/cards/{uid}/payouts", response_model=Page[PayoutPublic], summary="A card's payouts")
def get_card_payouts(
    uid: str,
    request: Request,
    session: SessionDep,
    _user: ViewerDep,
    cursor: str | None = None,
    limit: Annotated[int | None, Query(ge=1)] = None,
) -> Page[PayoutPublic]:
    flt = ListFilter(card=uid_or_422(uid))
    return one_page(
        payout_service.list_payouts, request, session, flt=flt, cursor=cursor, limit=limit
    )
