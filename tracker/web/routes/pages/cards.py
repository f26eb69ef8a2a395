"""The cards list, one card's page, and the admin's edits (alias, holder, notes, and
blocking with a confirm step and a reason). Every edit is recorded in the audit log."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Query, Request, status
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup

from tracker import charts, labels
from tracker.db import SessionDep
from tracker.models import CardStatus, CardUpdate, normalise_uid
from tracker.services import audit
from tracker.services import cards as card_service
from tracker.services import payouts as payout_service
from tracker.services import taps as tap_service
from tracker.services.filters import InvalidCursor, ListFilter
from tracker.web.auth import Admin, CSRFChecked, CurrentUser, Viewer
from tracker.web.deps import PageNumber, actor_of
from tracker.web.routes.pages.errors import PageRoute
from tracker.web.routes.pages.listing import PAGE_SIZE, clear_href, page_sort, sort_links
from tracker.web.templating import render
from tracker.web.zone import operator_zone

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
    activity = card_service.card_activity(session, uid=uid, zone=operator_zone(request))
    rows = [(f"{d.day.day} {d.day:%b}", d.taps, d.paid_sats) for d in activity]
    chart = Markup(charts.responsive(lambda w: charts.card_activity(rows, width=w)))
    history: list[Any] = []
    if user.is_admin:  # the audit log is for admins
        history, _ = audit.list_events(
            session, flt=audit.AuditFilter(target_type="card", target_id=uid), limit=10
        )
    # A tap whose counter comes right after a gap is flagged: the card was used elsewhere.
    gap_before = {high + 1: (low, high) for low, high in detail.counter_gaps}
    return render(
        request,
        "card.html",
        {
            "title": labels.card_label(uid, detail.alias),
            "card": detail,
            "taps": taps,
            "taps_next": taps_next,
            "payouts": payouts,
            "payouts_next": payouts_next,
            "gap_before": gap_before,
            "first_page": tap_cursor is None and payout_cursor is None,
            "activity_chart": chart,
            "activity_days": len(activity),
            "history": history,
            "action_words": audit.ACTIONS,
        },
        user=user,
    )


@router.get("/cards/{uid}/{change}")
def confirm_status_page(
    request: Request, uid: str, change: str, session: SessionDep, user: Admin
) -> Response:
    """The confirm step of blocking or unblocking: a page of its own (works without script
    under the CSP) that asks for the reason the change will record."""
    uid = _card_uid(uid)
    if change not in _CHANGES:
        raise HTTPException(status_code=404, detail="There is no page at this address.")
    try:
        card = card_service.get_card(session, uid=uid)
    except card_service.CardNotFound:
        raise HTTPException(status_code=404, detail=f"No card {uid} has been seen.") from None
    return render(
        request,
        "card_confirm.html",
        {"title": f"{change.capitalize()} card", "card": card, "change": change,
         "new_status": _CHANGES[change]},
        user=user,
    )


#: The confirm pages and the status each one asks for.
_CHANGES = {"block": CardStatus.blocked.value, "unblock": CardStatus.active.value}


def _update_card(
    request: Request,
    session: Any,
    user: CurrentUser,
    uid: str,
    update: CardUpdate,
    message: str,
) -> Response:
    try:
        card_service.update_card(
            session, uid=uid, update=update, actor=actor_of(request, user)
        )
    except card_service.CardNotFound:
        raise HTTPException(status_code=404, detail=f"No card {uid} has been seen.") from None
    return RedirectResponse(
        f"/cards/{uid}?msg={quote(message)}", status_code=status.HTTP_303_SEE_OTHER
    )


@router.post("/cards/{uid}/alias", dependencies=[CSRFChecked])
def rename_card(
    request: Request,
    uid: str,
    session: SessionDep,
    user: Admin,
    alias: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    uid = _card_uid(uid)
    return _update_card(request, session, user, uid, CardUpdate(alias=alias), "Alias saved.")


@router.post("/cards/{uid}/holder", dependencies=[CSRFChecked])
def card_holder(
    request: Request,
    uid: str,
    session: SessionDep,
    user: Admin,
    holder: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    uid = _card_uid(uid)
    return _update_card(request, session, user, uid, CardUpdate(holder=holder), "Holder saved.")


@router.post("/cards/{uid}/notes", dependencies=[CSRFChecked])
def card_notes(
    request: Request,
    uid: str,
    session: SessionDep,
    user: Admin,
    notes: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    uid = _card_uid(uid)
    return _update_card(request, session, user, uid, CardUpdate(notes=notes), "Notes saved.")


@router.post("/cards/{uid}/status", dependencies=[CSRFChecked])
def set_card_status(
    request: Request,
    uid: str,
    session: SessionDep,
    user: Admin,
    status_value: Annotated[str, Form(alias="status")],
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Posted from the confirm page: the new status and why (both required)."""
    uid = _card_uid(uid)
    if status_value not in _CHANGES.values():
        raise HTTPException(status_code=400, detail="A card can only be blocked or unblocked.")
    if not reason.strip():
        raise HTTPException(
            status_code=400,
            detail="Say why: a reason is required to block or unblock a card. Go back and "
            "fill it in.",
        )
    blocking = status_value == CardStatus.blocked.value
    update = CardUpdate(status=CardStatus(status_value), reason=reason)
    message = "Card blocked." if blocking else "Card unblocked."
    return _update_card(request, session, user, uid, update, message)
