"""``POST /webhooks/btcpay/{name}``: BTCPay's payout webhooks for one configured issuer.

Order of checks, so that nothing unauthenticated is stored or fetched: size limit (413), known
issuer (404), ``BTCPay-Sig`` over the raw body (401), a parsable event for this store (400),
then the delivery id: a delivery handled before answers 200 ``{"duplicate": true}`` and changes
nothing. Otherwise the payout is fetched from Greenfield by id (the body has no destination)
and stored; the delivery id is recorded in the same transaction. The issuer comes from the
per-process memo when it is fresh (no thread hop); the delivery check, the fetch and the store
run in one worker thread on a blocking ``httpx.Client`` shared by the app. When BTCPay cannot
be read the answer is 502 and nothing is recorded, so BTCPay's redelivery (or the next poll)
retries. More deliveries at once than ``webhook_inline`` are stored as pending and answered
at once; the queue worker fetches them, coalesced (see :mod:`tracker.services.webhook_queue`).
"""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError

from tracker.db import Database
from tracker.issuers.btcpay.client import GreenfieldError, GreenfieldNotFound
from tracker.issuers.btcpay.webhooks import (
    SIGNATURE_HEADER,
    WebhookRejected,
    parse_event,
    verify,
)
from tracker.models import WebhookDelivery
from tracker.services import issuers as issuer_service
from tracker.services import webhook_queue
from tracker.services.payout_sync import SyncCounts
from tracker.services.reconcile import receive_delivery

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
#: A delivery within this many seconds of a queued one is queued too (same burst).
BURST_S = 0.5


def _answer(status: int, reason: str, message: str) -> JSONResponse:
    return JSONResponse({"detail": {"reason": reason, "message": message}}, status_code=status)


async def _body(request: Request, limit: int) -> bytes | None:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/webhooks/btcpay/{name}")
async def btcpay_webhook(name: str, request: Request) -> JSONResponse:
    state = request.app.state
    database: Database = state.database
    raw = await _body(request, state.settings.webhook_max_bytes)
    if raw is None:
        return _answer(413, "too_large", "webhook bodies are limited in size")

    issuer = issuer_service.cached_issuer(database, name)
    if issuer is issuer_service.NOT_CACHED:

        def load() -> issuer_service.IssuerRecord | None:
            with database.sessions() as session:
                return issuer_service.load_issuer(session, state.secret_box, name=name)

        issuer = await database.call(load) if len(name) <= 64 else None
    if issuer is None:
        return _answer(404, "unknown_issuer", "no issuer by that name; see `tracker issuers list`")
    if not verify(issuer.webhook_secret, raw, request.headers.get(SIGNATURE_HEADER)):
        log.warning("webhook for issuer %s: bad or missing BTCPay-Sig", issuer.name)
        return _answer(401, "bad_signature", "BTCPay-Sig does not match this issuer's secret")
    try:
        event = parse_event(raw)
    except WebhookRejected as exc:
        return _answer(400, "bad_event", str(exc))
    if event.store_id is not None and event.store_id != issuer.store_id:
        return _answer(400, "wrong_store", "the event is for another store than this issuer's")
    burst = state.webhook_inflight >= state.settings.webhook_inline
    # Once a burst is queueing, the next deliveries of it queue too (cheaper per delivery).
    burst = burst or time.monotonic() - state.webhook_queued_at < BURST_S
    if event.payout_id and burst:
        # A burst: store the verified delivery as pending, committed (with the others of the
        # moment) before the answer; the queue worker fetches it, coalesced with the others
        # (services/webhook_queue.py).
        writer: webhook_queue.PendingWriter = state.pending_writer
        state.webhook_queued_at = time.monotonic()
        first = await writer.add(issuer.id, event.delivery_id, event.payout_id)
        state.webhook_wake.set()
        return JSONResponse({"duplicate": not first, "queued": first})
    if event.payout_id:
        payout_id = event.payout_id

        def work() -> SyncCounts | None:  # one worker thread: seen? fetch, store
            return receive_delivery(
                database, state.issuer_http_blocking, issuer, payout_id=payout_id,
                delivery_id=event.delivery_id,
            )

        state.webhook_inflight += 1
        try:
            counts = await database.call(work)
        except GreenfieldNotFound:
            log.info("webhook for issuer %s: payout no longer at the issuer", issuer.name)
            counts = SyncCounts(seen=-1)  # nothing to store; the delivery is recorded below
        except GreenfieldError as exc:
            log.warning("webhook for issuer %s: cannot read the payout: %s", issuer.name, exc)
            return _answer(502, "issuer_unavailable", "could not read the payout from BTCPay")
        finally:
            state.webhook_inflight -= 1
        if counts is None:
            return JSONResponse({"duplicate": True})
        if counts.seen >= 0:
            changed = bool(counts.created or counts.linked or counts.updated)
            return JSONResponse({"duplicate": False, "changed": changed})

    def record() -> bool:
        with database.sessions() as session, database.write_lock:
            session.add(
                WebhookDelivery(
                    issuer_pk=issuer.id, delivery_id=event.delivery_id, payout_id=event.payout_id
                )
            )
            try:
                session.commit()
            except IntegrityError:  # the same delivery twice at once: the other one won
                session.rollback()
                return False
            return True

    first = await database.call(record)  # no payout to store: just remember the delivery
    return JSONResponse({"duplicate": not first, "changed": False})
