"""Issuers (BTCPay stores the tracker follows), their webhook deliveries, and operator API
tokens.

``Issuer.api_key_enc`` and ``Issuer.webhook_secret_enc`` hold Fernet tokens (see
:mod:`tracker.issuers.secrets`), never the plain values; ``IssuerPublic`` has neither, so no
route or page can show them. ``WebhookDelivery`` makes webhook handling idempotent on
BTCPay's ``deliveryId``. ``ApiToken`` stores only the SHA-256 of an operator token.
"""

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from tracker.models import BigId, UTCDateTime, utcnow


class IssuerKind(StrEnum):
    btcpay = "btcpay"


class PayoutSource(StrEnum):
    """Who told us a payout's state: the station's claim, a webhook, or a Greenfield poll."""

    station = "station"
    webhook = "webhook"
    poll = "poll"


class Issuer(SQLModel, table=True):
    __tablename__ = "issuer"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    name: str = Field(max_length=64, unique=True)
    kind: str = Field(max_length=16)
    url: str = Field(max_length=500)
    store_id: str = Field(max_length=100)
    api_key_enc: str = Field(sa_type=sa.Text)
    webhook_secret_enc: str = Field(sa_type=sa.Text)
    created: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    #: End of the last reconcile pass that succeeded (``/metrics`` reports the lag from it).
    last_reconciled: datetime | None = Field(default=None, sa_type=UTCDateTime)


class IssuerPublic(SQLModel):
    """An issuer as the CLI and pages show it: no API key, no webhook secret."""

    name: str
    kind: IssuerKind
    url: str
    store_id: str
    created: datetime

    @property
    def webhook_path(self) -> str:
        return f"/webhooks/{self.kind.value}/{self.name}"


class WebhookDelivery(SQLModel, table=True):
    """One handled webhook delivery; a redelivery of the same ``delivery_id`` changes nothing."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        sa.UniqueConstraint("issuer_pk", "delivery_id", name="uq_webhook_delivery"),
        sa.Index(
            "ix_webhook_delivery_pending", "id",
            sqlite_where=sa.text("pending"), postgresql_where=sa.text("pending"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    issuer_pk: int = Field(foreign_key="issuer.id", sa_type=BigId)
    delivery_id: str = Field(max_length=100)
    payout_id: str | None = Field(default=None, max_length=100)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    #: Acknowledged but its payout not fetched yet (a burst): the webhook queue worker
    #: (:mod:`tracker.services.webhook_queue`) fetches it, also after a restart.
    pending: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})


class ApiToken(SQLModel, table=True):
    """An operator's API token (``Authorization: Bearer``), stored as its SHA-256 only."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    user_pk: int = Field(foreign_key="user_account.id", sa_type=BigId, index=True)
    token_hash: str = Field(max_length=64, unique=True)
    #: The first characters of the token (after ``bcop_``), to name it when revoking.
    prefix: str = Field(max_length=16, index=True)
    created: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    revoked: datetime | None = Field(default=None, sa_type=UTCDateTime)
