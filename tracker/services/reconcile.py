"""Reconciliation: read the issuer's payouts over Greenfield and store what they say.

Webhooks make the tracker fast; polling makes it complete: a lost webhook, a tracker that was
down, a payout no station reported. :func:`reconcile_issuer` lists the store's payouts with
``includeCancelled=true`` (without it, cancelled payouts silently drop out of the list) and
applies them in batches of :data:`BATCH` (one transaction each, so memory stays flat and a
long list never holds the SQLite write lock for long). :func:`reconcile_all` does that for
every issuer, then settles the claims still ``sending/claimed/pending/unknown`` that no
issuer payout matched once they are older than the grace period (Failed, or Unknown when an
issuer could not be asked: :mod:`tracker.services.overdue`).

:func:`receive_delivery` is the webhook's half: fetch one payout by id and apply it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from tracker.db import Database
from tracker.issuers.btcpay.client import (
    BlockingGreenfieldClient,
    GreenfieldClient,
    GreenfieldError,
    GreenfieldPayout,
)
from tracker.models import Issuer, PayoutSource, WebhookDelivery, utcnow
from tracker.services.issuers import IssuerRecord
from tracker.services.overdue import (
    OverdueCounts,
    claims_without_issuer,
    normalise_host,
    settle_overdue,
)
from tracker.services.payout_sync import SyncCounts, apply_payouts

log = logging.getLogger(__name__)
BATCH = 500


@dataclass
class ReconcileReport:
    issuer: str
    counts: SyncCounts = field(default_factory=SyncCounts)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"issuer": self.issuer, **asdict(self.counts), "error": self.error}


def client_for(http: httpx.AsyncClient, issuer: IssuerRecord) -> GreenfieldClient:
    return GreenfieldClient(http, url=issuer.url, store_id=issuer.store_id, api_key=issuer.api_key)


async def _apply(
    database: Database,
    issuer: IssuerRecord,
    payouts: list[GreenfieldPayout],
    source: PayoutSource,
    delivery_id: str | None = None,
) -> SyncCounts:
    def work() -> SyncCounts:
        with database.sessions() as session:
            return apply_payouts(
                session,
                issuer_id=issuer.id,
                issuer_host=issuer.host,
                payouts=payouts,
                source=source,
                delivery_id=delivery_id,
            )

    return await database.call(work)


def receive_delivery(
    database: Database, http: httpx.Client, issuer: IssuerRecord, *, payout_id: str,
    delivery_id: str, source: PayoutSource = PayoutSource.webhook,
) -> SyncCounts | None:
    """The webhook's half, blocking (run it in a worker thread): None when ``delivery_id`` was
    handled before; else fetch the payout (Greenfield errors propagate, typed, nothing stored)
    and store it with the delivery id in one transaction. A concurrent copy of the same
    delivery loses on the unique delivery id and also answers None."""
    with database.sessions() as session:
        seen = session.execute(
            sa.select(col(WebhookDelivery.id)).where(
                col(WebhookDelivery.issuer_pk) == issuer.id,
                col(WebhookDelivery.delivery_id) == delivery_id,
            )
        ).first()
    if seen is not None:
        return None
    payout = BlockingGreenfieldClient(
        http, url=issuer.url, store_id=issuer.store_id, api_key=issuer.api_key
    ).get_payout(payout_id)
    with database.sessions() as session:
        try:
            return apply_payouts(
                session, issuer_id=issuer.id, issuer_host=issuer.host, payouts=[payout],
                source=source, delivery_id=delivery_id,
            )
        except IntegrityError:
            return None


async def reconcile_issuer(
    database: Database, http: httpx.AsyncClient, issuer: IssuerRecord
) -> ReconcileReport:
    """One full pass over the issuer's store; Greenfield errors propagate, typed."""
    report = ReconcileReport(issuer.name)
    payouts = await client_for(http, issuer).list_payouts(include_cancelled=True)
    for start in range(0, len(payouts), BATCH):
        batch = payouts[start : start + BATCH]
        report.counts.add(await _apply(database, issuer, batch, PayoutSource.poll))
    del payouts

    def stamp() -> None:
        with database.write_lock, database.sessions() as session:
            session.execute(
                sa.update(Issuer).where(col(Issuer.id) == issuer.id).values(
                    last_reconciled=utcnow())
            )
            session.commit()

    await database.call(stamp)  # the pass succeeded: /metrics measures the lag from here
    return report


async def reconcile_all(
    database: Database,
    http: httpx.AsyncClient,
    issuers: list[IssuerRecord],
    *,
    grace_s: int,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """One pass over every issuer, then the overdue claims of each issuer host.

    A failing issuer is reported (``error``) and the others still run. Claims are settled
    per host once every issuer on that host has been polled (two stores on one BTCPay
    server share a host): Failed only when all of them answered, Unknown when one could not
    be asked (see :mod:`tracker.services.overdue`). The host's claim figures are reported on
    the first issuer of that host."""
    reports: dict[str, dict[str, Any]] = {}
    by_host: dict[str, list[IssuerRecord]] = {}
    errors: dict[str, str] = {}
    for issuer in issuers:
        by_host.setdefault(normalise_host(issuer.host), []).append(issuer)
        try:
            reports[issuer.name] = (await reconcile_issuer(database, http, issuer)).as_dict()
        except GreenfieldError as exc:
            log.warning("reconcile %s: %s", issuer.name, exc)
            reports[issuer.name] = {"issuer": issuer.name, "error": str(exc)}
            errors.setdefault(normalise_host(issuer.host), f"{issuer.name}: {exc}")
    moment = now or utcnow()
    for host, members in by_host.items():

        def settle(host: str = host, members: list[IssuerRecord] = members) -> OverdueCounts:
            with database.sessions() as session:
                return settle_overdue(
                    session, host=host, issuer_names=[m.name for m in members],
                    grace_s=grace_s, now=moment, error=errors.get(host),
                )

        overdue = await database.call(settle)
        reports[members[0].name].update(
            open_claims_unmatched=overdue.waiting,
            claims_failed=overdue.failed,
            claims_unknown=overdue.unknown,
        )
    if issuers:

        def strays() -> int:
            with database.sessions() as session:
                return claims_without_issuer(session, hosts=list(by_host))

        reports[issuers[0].name]["claims_no_issuer"] = await database.call(strays)
    return list(reports.values())
