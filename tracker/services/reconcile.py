"""Reconciliation: read the issuer's payouts over Greenfield and store what they say.

Webhooks make the tracker fast; polling makes it complete: a lost webhook, a tracker that was
down, a payout no station reported. :func:`reconcile_issuer` lists the store's payouts with
``includeCancelled=true`` (without it, cancelled payouts silently drop out of the list) and
applies them in batches of :data:`BATCH` (one transaction each, so memory stays flat and a
long list never holds the SQLite write lock for long). It then counts the claims still
``sending/claimed/pending/unknown`` that no issuer payout matched: what is left open.

:func:`sync_payout` is the webhook's half: fetch one payout by id and apply it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import sqlalchemy as sa
from sqlmodel import col

from tracker.db import Database
from tracker.issuers.btcpay.client import GreenfieldClient, GreenfieldPayout
from tracker.models import Claim, Issuer, Payout, PayoutSource, utcnow
from tracker.services.issuers import IssuerRecord
from tracker.services.payout_sync import OPEN_CLAIM_STATES, SyncCounts, apply_payouts

log = logging.getLogger(__name__)
BATCH = 500


@dataclass
class ReconcileReport:
    issuer: str
    counts: SyncCounts = field(default_factory=SyncCounts)
    open_claims_unmatched: int = 0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            **asdict(self.counts),
            "open_claims_unmatched": self.open_claims_unmatched,
            "error": self.error,
        }


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


async def sync_payout(
    database: Database, http: httpx.AsyncClient, issuer: IssuerRecord, payout_id: str,
    *, source: PayoutSource = PayoutSource.webhook, delivery_id: str | None = None,
) -> SyncCounts:
    """Fetch one payout (Greenfield errors propagate, typed) and store it, recording
    ``delivery_id`` in the same transaction (IntegrityError: that delivery was stored)."""
    payout = await client_for(http, issuer).get_payout(payout_id)
    return await _apply(database, issuer, [payout], source, delivery_id)


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

    def open_claims() -> int:
        with database.sessions() as session:
            return int(
                session.execute(
                    sa.select(sa.func.count())
                    .select_from(Claim)
                    .join(Payout, col(Payout.id) == col(Claim.payout_pk))
                    .where(
                        col(Claim.state).in_(OPEN_CLAIM_STATES),
                        col(Payout.issuer_payout_id).is_(None),
                        col(Claim.issuer_host) == issuer.host,
                    )
                ).scalar_one()
            )

    report.open_claims_unmatched = await database.call(open_claims)

    def stamp() -> None:
        with database.sessions() as session:
            session.execute(
                sa.update(Issuer).where(col(Issuer.id) == issuer.id).values(
                    last_reconciled=utcnow())
            )
            session.commit()

    await database.call(stamp)  # the pass succeeded: /metrics measures the lag from here
    return report
