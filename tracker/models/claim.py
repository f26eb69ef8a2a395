"""The claim family: an LNURL-withdraw charge a station made after an accepted tap.

``ClaimCreate`` is what the station posts (``POST /api/v1/claims``, see CONTRACT.md),
``Claim`` what is stored (with ``k1_hash``, never ``k1``), ``ClaimPublic`` what operators
read (no ``k1_hash``). Each claim also shows up as a payout in its first state
(:data:`CLAIM_TO_PAYOUT`).
"""

import re
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from pydantic import field_validator
from sqlmodel import Field, SQLModel

from tracker.models import BigId, PayoutState, UTCDateTime, utcnow
from tracker.models.checks import CheckedInput


class ClaimState(StrEnum):
    sending = "sending"
    claimed = "claimed"
    pending = "pending"
    refused = "refused"
    unknown = "unknown"
    paid = "paid"
    expired = "expired"


#: A claim in one of these never changes state again.
FINAL_CLAIM_STATES = frozenset({ClaimState.paid, ClaimState.refused, ClaimState.expired})

#: The payout state a claim's state shows as.
CLAIM_TO_PAYOUT = {
    ClaimState.sending: PayoutState.AwaitingPayment,
    ClaimState.claimed: PayoutState.AwaitingPayment,
    ClaimState.pending: PayoutState.InProgress,
    ClaimState.paid: PayoutState.Completed,
    ClaimState.refused: PayoutState.Failed,
    ClaimState.expired: PayoutState.Failed,
    ClaimState.unknown: PayoutState.Unknown,
}

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


class ClaimBase(SQLModel):
    claim_id: str = Field(min_length=32, max_length=32)
    state: ClaimState
    amount_msat: int = Field(gt=0, le=21_000_000 * 100_000_000 * 1000)
    memo: str | None = Field(default=None, max_length=200)
    bolt11: str | None = Field(default=None, max_length=2000)
    payment_hash: str | None = Field(default=None, max_length=64)
    issuer_host: str = Field(min_length=1, max_length=255)
    reason: str | None = Field(default=None, max_length=1000)
    station_time: datetime


class ClaimCreate(ClaimBase, CheckedInput):
    """What a station posts. ``tap_key`` is the idempotency key of the accepted tap that made
    the claim; ``k1_hash`` the SHA-256 (hex) of the withdrawRequest's k1."""

    tap_key: str = Field(min_length=1, max_length=200)
    k1_hash: str | None = Field(default=None, max_length=64)

    @field_validator("claim_id")
    @classmethod
    def _claim_id(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{32}", value):
            raise ValueError("claim_id must be a uuid4 in lower-case hex (32 characters)")
        return value

    @field_validator("payment_hash", "k1_hash")
    @classmethod
    def _hex64(cls, value: str | None) -> str | None:
        if value is not None and not _HEX64.fullmatch(value):
            raise ValueError("must be 32 bytes of hex (64 characters)")
        return value.lower() if value else value

    @field_validator("station_time")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("station_time must be ISO 8601 with a UTC offset")
        return value


class Claim(SQLModel, table=True):
    __tablename__ = "claim"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    claim_id: str = Field(max_length=32, unique=True)
    station_pk: int = Field(foreign_key="station.id", sa_type=BigId)
    tap_pk: int = Field(foreign_key="tap.id", sa_type=BigId, index=True)
    payout_pk: int | None = Field(default=None, foreign_key="payout.id", sa_type=BigId, index=True)
    state: str = Field(max_length=16)
    amount_msat: int = Field(sa_type=sa.BigInteger)
    memo: str | None = Field(default=None, max_length=200)
    bolt11: str | None = Field(default=None, sa_type=sa.Text)
    payment_hash: str | None = Field(default=None, max_length=64)
    issuer_host: str = Field(max_length=255)
    k1_hash: str | None = Field(default=None, max_length=64)
    reason: str | None = Field(default=None, max_length=1000)
    station_time: datetime = Field(sa_type=UTCDateTime)
    created: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ClaimStateChange(SQLModel, table=True):
    """History of a claim's state, one row per change (``source`` says who: the station)."""

    __tablename__ = "claim_state_change"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    claim_pk: int = Field(foreign_key="claim.id", sa_type=BigId, index=True)
    from_state: str | None = Field(default=None, max_length=16)
    to_state: str = Field(max_length=16)
    reason: str | None = Field(default=None, max_length=1000)
    source: str = Field(default="station", max_length=32)
    changed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ClaimStateChangePublic(SQLModel):
    from_state: ClaimState | None
    to_state: ClaimState
    reason: str | None
    source: str
    changed_at: datetime


class ClaimPublic(ClaimBase):
    """A claim as operators read it: no ``k1_hash``."""

    tap_key: str
    station: str
    payout_id: int | None
    created: datetime
    updated: datetime
    history: list[ClaimStateChangePublic] = Field(default_factory=list)
