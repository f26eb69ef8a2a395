"""The cards list, one card's page, and the admin's edits (alias, notes, block)."""

from __future__ import annotations

import logging
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Query, Request, status
from fastapi.responses import RedirectResponse, Response

from tracker.db import SessionDep
from tracker.models import CardStatus, CardUpdate, normalise_uid
from tracker.services import cards as card_service
from tracker.services import payouts as payout_service
from tracker.services import taps as tap_service
from tracker.services.filters import InvalidCursor, ListFilter
from tracker.web.auth import Admin, CSRFChecked, Viewer
from tracker.web.deps import PageNumber
from tracker.web.routes.pages.errors import PageRoute
from tracker.web.routes.pages.listing import PAGE_SIZE, clear_href, page_sort, sort_links
from tracker.web.templating import render

log = logging.getLogger(__name__)
router = APIRouter(route_class=PageRoute, include_in_schema=False)


@router.get("/cards")
def cards_page(
    request: Request,
    session: SessionDep,
    user: Viewer,
    q: str = "",
    card_status: Annotated[str, Query(alias="status")] = "",
    page: PageNumber = 1,
) -> Response:
    status_filter = None
    if card_status:
        try:
            status_filter = CardStatus(card_status)
        except ValueError:
            raise HTTPException(
                status_code=400, detail=f"Unknown card status {card_status!r}."
            ) from None
    order = page_sort(request, "cards")
    result = card_service.list_cards(
        session,
        q=q.strip()[:200] or None,
        status=status_filter,
        page=max(page, 1),
        page_size=PAGE_SIZE,
        sort=order,
    )
    pages = max(1, -(-result.total // result.page_size))
    params = {"q": q, "status": card_status}
    if not order.is_default:
        params |= {"sort": order.column, "dir": order.dir}
    return render(
        request,
        "cards.html",
        {
            "title": "Cards",
            "result": result,
            "q": q,
            "status": card_status,
            "statuses": [s.value for s in CardStatus],
            "pages": pages,
            "params": params,
            "sorting": sort_links("/cards", params, order),
            "filtered": bool(q.strip() or card_status),
            "clear_href": clear_href("/cards", params),
        },
        user=user,
    )


def _card_uid(uid: str) -> str:
    try:
        return normalise_uid(uid)
    except ValueError:
        raise HTTPException(status_code=404, detail="That is not a card UID.") from None


@router.get("/cards/{uid}")
def card_page(request: Request, uid: str, session: SessionDep, user: Viewer) -> Response:
    uid = _card_uid(uid)
    try:
        detail = card_service.card_detail(session, uid=uid)
    except card_service.CardNotFound:
        raise HTTPException(status_code=404, detail=f"No card {uid} has been seen.") from None
    tap_cursor = request.query_params.get("taps_cursor") or None
    payout_cursor = request.query_params.get("payouts_cursor") or None
    try:
        taps, taps_next = tap_service.list_taps(
            session, flt=ListFilter(card=uid), cursor=tap_cursor, limit=100
        )
        payouts, payouts_next = payout_service.list_payouts(
            session, flt=ListFilter(card=uid), cursor=payout_cursor, limit=100
        )
    except InvalidCursor:
        raise HTTPException(status_code=400, detail="That page link is broken.") from None
    # A tap whose counter comes right after a gap is flagged: the card was used elsewhere.
    gap_before = {high + 1: (low, high) for low, high in detail.counter_gaps}
    return render(
        request,
        "card.html",
        {
            "title": detail.alias or uid,
            "card": detail,
            "taps": taps,
            "taps_next": taps_next,
            "payouts": payouts,
            "payouts_next": payouts_next,
            "gap_before": gap_before,
            "first_page": tap_cursor is None and payout_cursor is None,
        },
        user=user,
    )


def _update_card(session: Any, uid: str, update: CardUpdate, message: str) -> Response:
    try:
        card_service.update_card(session, uid=uid, update=update)
    except card_service.CardNotFound:
        raise HTTPException(status_code=404, detail=f"No card {uid} has been seen.") from None
    return RedirectResponse(
        f"/cards/{uid}?msg={quote(message)}", status_code=status.HTTP_303_SEE_OTHER
    )


@router.post("/cards/{uid}/alias", dependencies=[CSRFChecked])
def rename_card(
    uid: str,
    session: SessionDep,
    user: Admin,
    alias: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    uid = _card_uid(uid)
    log.info("%s renamed card %s", user.username, uid)
    return _update_card(session, uid, CardUpdate(alias=alias), "Alias saved.")


@router.post("/cards/{uid}/notes", dependencies=[CSRFChecked])
def card_notes(
    uid: str,
    session: SessionDep,
    user: Admin,
    notes: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    uid = _card_uid(uid)
    return _update_card(session, uid, CardUpdate(notes=notes), "Notes saved.")


@router.post("/cards/{uid}/status", dependencies=[CSRFChecked])
def set_card_status(
    uid: str,
    session: SessionDep,
    user: Admin,
    status_value: Annotated[str, Form(alias="status")],
) -> Response:
    uid = _card_uid(uid)
    if status_value not in (CardStatus.active.value, CardStatus.blocked.value):
        raise HTTPException(status_code=400, detail="A card can only be blocked or unblocked.")
    log.info("%s set card %s to %s", user.username, uid, status_value)
    message = "Card blocked." if status_value == CardStatus.blocked.value else "Card unblocked."
    return _update_card(session, uid, CardUpdate(status=CardStatus(status_value)), message)
