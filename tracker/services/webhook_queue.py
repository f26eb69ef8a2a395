"""Webhook deliveries acknowledged during a burst and fetched afterwards, coalesced.

Inline, each delivery costs one Greenfield request plus one transaction before its answer.
When more deliveries arrive at once than ``webhook_inline`` allows, the route verifies the
signature, stores the delivery as ``pending`` (:func:`enqueue`, committed: durable before the
2xx) and answers; :func:`drain` then settles pending deliveries in bulk. Per issuer it
fetches the payouts by id when there are few, or lists the whole store once
(``includeCancelled=true``) when the pending ids are a sizeable share of it (one request and a
cheap parse per payout instead of a request each), and stores them in batches whose
transaction also clears ``pending``. Nothing acknowledged is lost: a crash leaves the rows
pending, and the worker starts by draining them. The event's ``type`` is never read; the
fetched payout (and its revision) decides, as on the inline path.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

import httpx
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from tracker.db import Database, write_lock
from tracker.issuers.btcpay.client import GreenfieldClient, GreenfieldNotFound, GreenfieldPayout
from tracker.models import Payout, PayoutSource, WebhookDelivery, utcnow
from tracker.services.issuers import IssuerRecord
from tracker.services.payout_sync import apply_payouts

log = logging.getLogger(__name__)

#: Pending deliveries taken per pass, and payouts stored per transaction.
TAKE = 5000
STORE_BATCH = 500
#: List the store instead of fetching by id when the pending ids reach 1/LIST_SHARE of the
#: store's payouts (and at least MIN_LIST): parsing a listed payout costs ~1/40 of a request.
LIST_SHARE = 40
MIN_LIST = 32
FETCH_CONCURRENCY = 8

_TABLE = WebhookDelivery.__table__  # type: ignore[attr-defined]
_INSERT = sa.insert(_TABLE)


def enqueue(session: Session, *, issuer_id: int, delivery_id: str, payout_id: str) -> bool:
    """Store a verified delivery as pending (commits). False: that delivery was seen."""
    with write_lock(session):
        try:
            session.connection().execute(_INSERT, {
                "issuer_pk": issuer_id, "delivery_id": delivery_id, "payout_id": payout_id,
                "received_at": utcnow(), "pending": True,
            })
            session.commit()
        except IntegrityError:
            session.rollback()
            return False
    return True


def enqueue_many(database: Database, items: list[tuple[int, str, str]]) -> list[bool]:
    """:func:`enqueue` for several ``(issuer id, delivery id, payout id)`` in one transaction
    (one commit for a burst); per item, False when that delivery was seen (also earlier in
    ``items``). Should another process insert one of them meanwhile, it falls back to one
    transaction per item."""
    with database.sessions() as session:
        with write_lock(session):
            conn = session.connection()
            seen = {
                (int(i), d) for i, d in conn.execute(
                    sa.select(_TABLE.c.issuer_pk, _TABLE.c.delivery_id).where(
                        _TABLE.c.delivery_id.in_(sorted({d for _i, d, _p in items}))
                    )
                )
            }
            fresh: list[bool] = []
            rows = []
            now = utcnow()
            for issuer_id, delivery_id, payout_id in items:
                new = (issuer_id, delivery_id) not in seen
                fresh.append(new)
                if new:
                    seen.add((issuer_id, delivery_id))
                    rows.append({"issuer_pk": issuer_id, "delivery_id": delivery_id,
                                 "payout_id": payout_id, "received_at": now, "pending": True})
            try:
                if rows:
                    conn.execute(_INSERT, rows)
                session.commit()
                return fresh
            except IntegrityError:
                session.rollback()
        return [enqueue(session, issuer_id=i, delivery_id=d, payout_id=p) for i, d, p in items]


class PendingWriter:
    """Group commit for queued deliveries: the enqueues that arrive while one transaction is
    being written share the next one. Each caller still gets its answer only after its own
    delivery is committed, so nothing acknowledged can be lost; a burst pays one thread hop
    and one commit per group instead of per delivery. One per event loop."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._waiting: list[tuple[tuple[int, str, str], asyncio.Future[bool]]] = []
        self._writing = False

    async def add(self, issuer_id: int, delivery_id: str, payout_id: str) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append(((issuer_id, delivery_id, payout_id), future))
        if not self._writing:
            self._writing = True
            asyncio.get_running_loop().create_task(self._write())
        return await future

    async def _write(self) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                items = [item for item, _future in group]
                try:
                    fresh = await self._database.call(
                        functools.partial(enqueue_many, self._database, items)
                    )
                except Exception as exc:  # each waiting request answers with the error
                    for _item, future in group:
                        future.set_exception(exc)
                    continue
                for (_item, future), new in zip(group, fresh, strict=True):
                    future.set_result(new)
        finally:
            self._writing = False


def _any_pending(database: Database) -> bool:
    with database.sessions() as session:
        return session.execute(
            sa.select(col(WebhookDelivery.id)).where(col(WebhookDelivery.pending).is_(True))
            .limit(1)
        ).first() is not None


def _take(
    database: Database, issuer_ids: list[int]
) -> dict[int, tuple[datetime, list[tuple[int, str]]]]:
    """Pending deliveries of these issuers: ``(oldest received_at, [(row id, payout id)])``
    per issuer (an issuer that cannot be opened must not block the others)."""
    with database.sessions() as session:
        rows = session.execute(
            sa.select(col(WebhookDelivery.id), col(WebhookDelivery.issuer_pk),
                      col(WebhookDelivery.payout_id), col(WebhookDelivery.received_at))
            .where(col(WebhookDelivery.pending).is_(True),
                   col(WebhookDelivery.issuer_pk).in_(issuer_ids))
            .order_by(col(WebhookDelivery.id))
            .limit(TAKE)
        ).all()
    grouped: dict[int, tuple[datetime, list[tuple[int, str]]]] = {}
    for row_id, issuer_pk, payout_id, received in rows:
        _oldest, items = grouped.setdefault(int(issuer_pk), (received, []))
        items.append((int(row_id), payout_id or ""))
    return grouped


def _store_sizes(database: Database) -> dict[tuple[int, str], int]:
    """Payouts per issuer store as last seen (a per-database memo): sets the list threshold."""
    sizes: dict[tuple[int, str], int] = database.shared("webhook_queue.store_sizes", dict)
    return sizes


async def _store_size(database: Database, issuer: IssuerRecord) -> int:
    key = (issuer.id, issuer.store_id)
    sizes = _store_sizes(database)
    if key not in sizes:

        def count() -> int:
            with database.sessions() as session:
                return int(session.execute(
                    sa.select(sa.func.count()).select_from(Payout)
                    .where(col(Payout.issuer_pk) == issuer.id)
                ).scalar_one())

        sizes[key] = await database.call(count)
    return sizes[key]


async def _list_from(database: Database, issuer: IssuerRecord) -> int:
    """How many pending ids make listing the store cheaper than fetching each."""
    return max(MIN_LIST, await _store_size(database, issuer) // LIST_SHARE)


async def _fetch(
    database: Database, http: httpx.AsyncClient, issuer: IssuerRecord, ids: list[str]
) -> tuple[dict[str, GreenfieldPayout], set[str]]:
    """``(found, gone)``: the payouts, and the ids the issuer no longer has."""
    client = GreenfieldClient(http, url=issuer.url, store_id=issuer.store_id,
                              api_key=issuer.api_key)
    found: dict[str, GreenfieldPayout] = {}
    missing = ids
    if len(ids) >= await _list_from(database, issuer):
        listed = await client.list_payouts(include_cancelled=True)
        _store_sizes(database)[(issuer.id, issuer.store_id)] = len(listed)
        wanted = set(ids)
        found = {p.id: p for p in listed if p.id in wanted}
        del listed
        missing = [i for i in ids if i not in found]
    gone: set[str] = set()
    limit = asyncio.Semaphore(FETCH_CONCURRENCY)

    async def one(payout_id: str) -> None:
        async with limit:
            try:
                found[payout_id] = await client.get_payout(payout_id)
            except GreenfieldNotFound:
                gone.add(payout_id)

    await asyncio.gather(*(one(i) for i in missing))
    return found, gone


async def drain(
    database: Database, http: httpx.AsyncClient,
    issuers: Callable[[], Awaitable[dict[int, IssuerRecord]]],
    *, gather_s: float = 0.0,
) -> tuple[int, int]:
    """Settle the pending deliveries once: ``(settled, deferred)``. An issuer's deliveries
    are deferred while they are too few to list the store and the oldest is younger than
    ``gather_s`` (so a burst is fetched in large passes). Greenfield errors other than "not
    found" propagate (the deliveries stay pending for the next pass). ``issuers`` is called
    (for the opened issuers by id) only when something is pending."""
    settled = deferred = 0
    now = utcnow()
    if not await database.call(lambda: _any_pending(database)):
        return 0, 0
    by_id = await issuers()
    pending = await database.call(lambda: _take(database, list(by_id)))
    for issuer_pk, (oldest, rows) in pending.items():
        issuer = by_id[issuer_pk]
        ids = list(dict.fromkeys(payout_id for _row, payout_id in rows if payout_id))
        young = (now - oldest).total_seconds() < gather_s
        if young and len(ids) < await _list_from(database, issuer):
            deferred += len(rows)
            continue
        found, gone = await _fetch(database, http, issuer, ids)
        if gone:
            log.info("webhook queue: %d payouts no longer at issuer %s", len(gone), issuer.name)
        payouts = list(found.values())
        for start in range(0, max(len(payouts), 1), STORE_BATCH):
            batch = payouts[start:start + STORE_BATCH]
            in_batch = {p.id for p in batch}
            done = [row for row, payout_id in rows if payout_id in in_batch]
            if start == 0:  # rows with nothing to store are cleared with the first batch
                done += [row for row, payout_id in rows
                         if payout_id in gone or not payout_id]

            def store(batch: list[GreenfieldPayout] = batch, done: list[int] = done,
                      issuer: IssuerRecord = issuer) -> None:
                with database.sessions() as session:
                    apply_payouts(session, issuer_id=issuer.id, issuer_host=issuer.host,
                                  payouts=batch, source=PayoutSource.webhook,
                                  done_deliveries=done)

            await database.call(store)
        settled += len(rows)
    return settled, deferred
