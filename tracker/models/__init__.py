"""Database tables and API shapes, one SQLModel family per entity.

Each entity has ``Base`` (fields shared by input and output) → ``Create`` / ``Update`` (what a
client may send) → the table model (``table=True``, what is stored) → ``Public`` (what the API
returns). The API never returns a table object: ``Station.token_hash`` and ``User.password_hash``
exist only in the table models, so no route can leak them by accident.

Foreign-key columns are named ``*_pk`` (``card_pk``) because ``card_id`` already means the Bolt
Card deterministic card ID in the station protocol.

Timestamps are stored in UTC and always come back timezone-aware (see :class:`UTCDateTime`),
on SQLite as well as PostgreSQL.

Enumerations are stored as short strings (not native PostgreSQL enums) so adding a state later
is a one-line migration on both databases.
"""

import re
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from pydantic import computed_field, field_validator, model_validator
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from tracker import words
from tracker.models.checks import MAX_DB_INT, MAX_MSAT, CheckedInput
from tracker.models.labels import CardLabelled

#: Named constraints, so Alembic can alter them later (SQLite batch mode needs names).
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# --------------------------------------------------------------------------------------------
# Column types


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is stored as UTC and read back timezone-aware on every backend.

    SQLite has no timezone type: SQLAlchemy stores the naive text. We convert to UTC before
    storing and attach UTC on the way out, so comparisons and JSON output are identical on
    SQLite and PostgreSQL.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


#: 64-bit ids on PostgreSQL; ``INTEGER PRIMARY KEY`` (the rowid alias) on SQLite, which is
#: already 64-bit and is the only type SQLite auto-increments.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------------------------
# Enumerations


class CardStatus(StrEnum):
    active = "active"
    blocked = "blocked"
    wiped = "wiped"


class TapOutcome(StrEnum):
    accepted = "accepted"
    refused = "refused"


class PayoutState(StrEnum):
    """BTCPay Greenfield payout states, plus ``Failed`` (the claim itself failed: the issuer
    answered an error, so no payout exists) and ``Unknown`` (the station could not tell)."""

    AwaitingApproval = "AwaitingApproval"
    AwaitingPayment = "AwaitingPayment"
    InProgress = "InProgress"
    Completed = "Completed"
    Cancelled = "Cancelled"
    Failed = "Failed"
    Unknown = "Unknown"


PENDING_STATES = (
    PayoutState.AwaitingApproval,
    PayoutState.AwaitingPayment,
    PayoutState.InProgress,
)
FAILED_STATES = (PayoutState.Failed, PayoutState.Cancelled)


class Role(StrEnum):
    viewer = "viewer"
    admin = "admin"


_UID_RE = re.compile(r"^(?:[0-9A-Fa-f]{2}){4,10}$")
MAX_COUNTER = 0xFFFFFF


def normalise_uid(value: str) -> str:
    """Uppercase hex UID, 4..10 bytes; ValueError otherwise (routes turn it into 422)."""
    text = value.strip()
    if not _UID_RE.match(text):
        raise ValueError("card_uid must be 4 to 10 bytes of hex, e.g. 04A1B2C3D4E5F6")
    return text.upper()


# --------------------------------------------------------------------------------------------
# Tap


class TapBase(SQLModel):
    idempotency_key: str = Field(min_length=1, max_length=200)
    card_uid: str
    card_id: str | None = Field(default=None, max_length=64)
    counter: int = Field(ge=0, le=MAX_COUNTER)
    station_time: datetime
    outcome: TapOutcome
    reason: str | None = Field(default=None, max_length=500)
    issuer_host: str | None = Field(default=None, max_length=255)
    #: False: a foreign card charged without keys (the issuer was the only verifier). Such a
    #: tap gets no counter compare-and-set and stays out of the card's counters.
    verified: bool = True


class TapCreate(TapBase, CheckedInput):
    """What a station reports. ``station_time`` must carry a UTC offset.

    The idempotency key of an accepted, verified tap is exactly ``<UID>:<counter>`` of the
    body (stored with the UID in upper case): a key cannot name another card's tap. Every
    other tap (refused, or unverified) must use a key outside that form (the station sends
    ``<station>:<uuid4>``), so no such tap can take the key of an accepted one.
    """

    @field_validator("card_uid")
    @classmethod
    def _uid(cls, value: str) -> str:
        return normalise_uid(value)

    @field_validator("station_time")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("station_time must be ISO 8601 with a UTC offset")
        return value

    @model_validator(mode="after")
    def _key_names_the_tap(self) -> "TapCreate":
        uid, sep, counter = self.idempotency_key.partition(":")
        looks_like_card_key = bool(sep) and _UID_RE.match(uid) and counter.isdecimal()
        if self.outcome == TapOutcome.accepted and self.verified:
            expected = f"{self.card_uid}:{self.counter}"
            if self.idempotency_key.upper() != expected:
                raise ValueError(
                    f"idempotency_key of an accepted tap must be '<card_uid>:<counter>' "
                    f"of this tap ({expected!r})"
                )
            self.idempotency_key = expected
        elif looks_like_card_key:
            raise ValueError(
                "idempotency_key '<UID>:<counter>' is reserved for accepted taps; "
                "send '<station>:<uuid4>' for this one"
            )
        return self


class Tap(SQLModel, table=True):
    __tablename__ = "tap"
    __table_args__ = (
        sa.Index("ix_tap_received", "received_at", "id"),
        sa.Index("ix_tap_card_received", "card_pk", "received_at", "id"),
        sa.Index("ix_tap_station_received", "station_pk", "received_at", "id"),
        sa.Index("ix_tap_outcome_received", "outcome", "received_at", "id"),
        sa.Index("ix_tap_counter", "counter", "id"),  # the taps list sorted by counter
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    card_pk: int = Field(foreign_key="card.id", sa_type=BigId)
    station_pk: int = Field(foreign_key="station.id", sa_type=BigId)
    counter: int
    station_time: datetime = Field(sa_type=UTCDateTime)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    outcome: str = Field(max_length=16)
    reason: str | None = Field(default=None, max_length=500)
    issuer_host: str | None = Field(default=None, max_length=255)
    idempotency_key: str = Field(max_length=200, unique=True)
    verified: bool = Field(default=True, sa_column_kwargs={"server_default": sa.true()})


class TapDailyCount(SQLModel, table=True):
    """Taps per UTC day, station and outcome, kept by database triggers on ``tap``.

    Why: counting a million taps for the dashboard takes ~80 ms on PostgreSQL; summing a few
    rows per day takes well under one. Triggers (not application code) keep it exact whoever
    inserts, updates or deletes taps: the API, a station writing straight into SQLite, a
    migration or an operator's SQL. Created by migration 0001; see services/stats.py.
    """

    __tablename__ = "tap_daily_count"

    day: date = Field(primary_key=True)
    station_pk: int = Field(primary_key=True, sa_type=BigId)
    outcome: str = Field(primary_key=True, max_length=16)
    taps: int = Field(default=0, sa_type=sa.BigInteger)


class TapPublic(TapBase, CardLabelled):
    """A stored tap as the API answers it, the live event stream sends it and the page
    script (static/live.js) draws it: one shape everywhere."""

    id: int
    station: str
    received_at: datetime
    card_alias: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def url(self) -> str:
        """The operator page of the tap's card."""
        return f"/cards/{self.card_uid}"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tap_url(self) -> str:
        """The operator page of this one tap."""
        return f"/taps/{self.id}"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def reason_text(self) -> str | None:
        """``reason`` in words; the code stays in ``reason`` (tooltips, filters, exports)."""
        return words.reason_text(self.reason, counter=self.counter)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def trust_note(self) -> str | None:
        """Set when the UID is unproven (bad MAC, foreign card): not counted for the card."""
        return words.trust_note(reason=self.reason, verified=self.verified)


# --------------------------------------------------------------------------------------------
# Payout (the claim a station made, and the issuer's payout it became)


class PayoutBase(SQLModel):
    amount_msat: int = Field(ge=0, le=MAX_MSAT)
    bolt11: str | None = Field(default=None, max_length=4000)
    payment_hash: str | None = Field(default=None, max_length=64)
    issuer_host: str | None = Field(default=None, max_length=255)
    lnurl_k1: str | None = Field(default=None, max_length=500)
    issuer_reason: str | None = Field(default=None, max_length=1000)
    issuer_payout_id: str | None = Field(default=None, max_length=100)
    pull_payment_id: str | None = Field(default=None, max_length=100)
    proof: dict[str, Any] | None = None


class PayoutCreate(PayoutBase, CheckedInput):
    """A claim reported by a station. Link it to its tap by ``tap_idempotency_key`` or ``tap_id``.

    ``idempotency_key`` (optional) makes a retried report (station outbox) return the first
    record instead of creating a second payout.
    """

    tap_idempotency_key: str | None = Field(default=None, max_length=200)
    tap_id: int | None = Field(default=None, ge=1, le=MAX_DB_INT)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    state: PayoutState = PayoutState.Unknown

    @field_validator("payment_hash")
    @classmethod
    def _hash(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", value):
            raise ValueError("payment_hash must be 32 bytes of hex")
        return value.lower() if value else value


class PayoutUpdate(CheckedInput):
    """A change of state or issuer detail; a state change writes a history row."""

    state: PayoutState | None = None
    issuer_reason: str | None = Field(default=None, max_length=1000)
    issuer_payout_id: str | None = Field(default=None, max_length=100)
    pull_payment_id: str | None = Field(default=None, max_length=100)
    proof: dict[str, Any] | None = None
    source: str = Field(default="api", max_length=32)


class Payout(SQLModel, table=True):
    __tablename__ = "payout"
    __table_args__ = (
        sa.Index("ix_payout_created", "created", "id"),
        # Covering indexes for the dashboard aggregates (by state, day, card; migration 0008
        # says which database reads which), so they read indexes, not the wide payout rows.
        sa.Index("ix_payout_created_state_amount", "created", "state", "amount_msat"),
        sa.Index("ix_payout_state_created", "state", "created", "id", "amount_msat", "card_pk"),
        sa.Index("ix_payout_card_created", "card_pk", "created", "id"),
        sa.Index("ix_payout_card_state_created", "card_pk", "state", "created", "amount_msat"),
        sa.Index("ix_payout_station_created", "station_pk", "created", "id"),
        sa.Index("ix_payout_amount", "amount_msat", "id"),  # the payouts list sorted by amount
        sa.Index("uq_payout_issuer_payout", "issuer_pk", "issuer_payout_id", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    tap_pk: int | None = Field(default=None, foreign_key="tap.id", sa_type=BigId, index=True)
    card_pk: int | None = Field(default=None, foreign_key="card.id", sa_type=BigId)
    station_pk: int | None = Field(default=None, foreign_key="station.id", sa_type=BigId)
    idempotency_key: str | None = Field(default=None, max_length=200, unique=True)
    amount_msat: int = Field(sa_type=sa.BigInteger)
    bolt11: str | None = Field(default=None, sa_type=sa.Text)
    payment_hash: str | None = Field(default=None, max_length=64, index=True)
    issuer_host: str | None = Field(default=None, max_length=255)
    lnurl_k1: str | None = Field(default=None, max_length=500)
    issuer_reason: str | None = Field(default=None, max_length=1000)
    state: str = Field(default=PayoutState.Unknown, max_length=32)
    issuer_payout_id: str | None = Field(default=None, max_length=100, index=True)
    pull_payment_id: str | None = Field(default=None, max_length=100)
    proof: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    created: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # The issuer's own record (Greenfield payout), when the tracker has seen it.
    issuer_pk: int | None = Field(default=None, foreign_key="issuer.id", sa_type=BigId)
    revision: int | None = Field(default=None)
    original_amount: str | None = Field(default=None, max_length=40)
    original_currency: str | None = Field(default=None, max_length=16)
    payout_amount: str | None = Field(default=None, max_length=40)
    payout_currency: str | None = Field(default=None, max_length=16)
    issuer_created: datetime | None = Field(default=None, sa_type=UTCDateTime)
    #: SHA-256 of the lower-cased BOLT11, indexed: matches an issuer payout's ``destination``
    #: to the claim that submitted it without decoding the invoice (see payout_sync).
    bolt11_digest: str | None = Field(default=None, max_length=64, index=True)


class PayoutPublic(CardLabelled):
    """A payout as the API answers it, the live event stream sends it and the page script
    draws it: one shape everywhere.

    The proof is reduced to its payment hash and ``proof_present``: a preimage is a secret
    (whoever holds it can claim the payment was theirs) and never leaves the database.
    """

    id: int
    amount_msat: int
    bolt11: str | None = None
    payment_hash: str | None = None
    issuer_host: str | None = None
    issuer_reason: str | None = None
    issuer: str | None = None
    issuer_payout_id: str | None = None
    pull_payment_id: str | None = None
    revision: int | None = None
    original_amount: str | None = None
    original_currency: str | None = None
    payout_amount: str | None = None
    payout_currency: str | None = None
    proof_payment_hash: str | None = None
    proof_present: bool = False
    #: False for a payout found on the issuer's store that no station claimed.
    from_station: bool = True
    state: PayoutState
    tap_id: int | None
    tap_idempotency_key: str | None = None
    card_uid: str | None
    card_alias: str | None = None
    station: str | None
    created: datetime
    updated: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def amount_sats(self) -> int:
        return self.amount_msat // 1000

    @computed_field  # type: ignore[prop-decorator]
    @property
    def url(self) -> str:
        """The payout's operator page."""
        return f"/payouts/{self.id}"


class PayoutStateChange(SQLModel, table=True):
    """History of a payout's state: who changed it (station, webhook, api) and when."""

    __tablename__ = "payout_state_change"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    payout_pk: int = Field(foreign_key="payout.id", sa_type=BigId, index=True)
    from_state: str | None = Field(default=None, max_length=32)
    to_state: str = Field(max_length=32)
    reason: str | None = Field(default=None, max_length=1000)
    source: str = Field(default="api", max_length=32)
    changed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class PayoutStateChangePublic(SQLModel):
    from_state: PayoutState | None
    to_state: PayoutState
    reason: str | None
    source: str
    changed_at: datetime


class PayoutDetail(PayoutPublic):
    """Payout detail page: the payout, its tap, the station's claim and its state history."""

    tap: TapPublic | None = None
    claim: "ClaimPublic | None" = None
    history: list[PayoutStateChangePublic] = Field(default_factory=list)


# --------------------------------------------------------------------------------------------
# User (operators)


class UserBase(SQLModel):
    username: str = Field(min_length=1, max_length=100)
    role: Role = Role.viewer


class UserCreate(UserBase, CheckedInput):
    password: str = Field(min_length=8, max_length=1000)


class User(SQLModel, table=True):
    __tablename__ = "user_account"  # "user" is reserved on PostgreSQL

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    username: str = Field(max_length=100, unique=True)
    role: str = Field(default=Role.viewer, max_length=16)
    password_hash: str = Field(max_length=255)
    created: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    #: IANA zone the operator reads times in; None: the server's (TRACKER_TIMEZONE).
    timezone: str | None = Field(default=None, max_length=64)
    #: A disabled user cannot sign in and has no sessions (``tracker users disable``).
    disabled: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})


class OperatorSession(SQLModel, table=True):
    """One signed-in browser. The cookie carries a random id; only its SHA-256 is stored, and
    deleting the row ends the session in every tracker process at the next request."""

    __tablename__ = "operator_session"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    sid_hash: str = Field(max_length=64, unique=True)
    user_pk: int = Field(
        sa_column=sa.Column(
            BigId, sa.ForeignKey("user_account.id", ondelete="CASCADE"), nullable=False,
            index=True,
        )
    )
    created: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires: datetime = Field(sa_type=UTCDateTime)


class LoginAttempt(SQLModel, table=True):
    """One sign-in attempt, written before the password is checked (see
    :mod:`tracker.services.logins`). Rows older than the window are deleted as they age."""

    __tablename__ = "login_attempt"
    __table_args__ = (
        sa.Index("ix_login_attempt_username_at", "username", "at"),
        sa.Index("ix_login_attempt_address_at", "address", "at"),
        sa.Index("ix_login_attempt_at", "at"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    username: str = Field(max_length=200)
    address: str = Field(max_length=64)
    at: datetime = Field(sa_type=UTCDateTime)


class UserPublic(UserBase):
    id: int
    created: datetime
    disabled: bool = False


# --------------------------------------------------------------------------------------------
# Aggregates


class Stats(SQLModel):
    since: datetime | None
    until: datetime | None
    total_payouts: int
    pending_payouts: int
    completed_payouts: int
    failed_payouts: int
    total_amount_sats: int
    completed_amount_sats: int
    #: Separate figures: what was paid, what is still on its way, what will not be paid.
    pending_amount_sats: int = 0
    failed_amount_sats: int = 0
    payouts_by_state: dict[str, int] = Field(default_factory=dict)
    active_cards: int
    taps_today: int
    taps_in_period: int


T = TypeVar("T")


class Page(SQLModel, Generic[T]):
    """One page of a keyset-paginated list. Pass ``next_cursor`` back as ``cursor``."""

    items: list[T]
    next_cursor: str | None = None


from tracker.models.audit import AuditEvent, AuditEventPublic  # noqa: E402, F401
from tracker.models.card import Card, CardBase, CardDetail, CardPublic, CardStatusPublic, CardUpdate  # noqa: E402, F401  (re-exported)

# The claim family lives in its own module; imported here so ``tracker.models`` is the one
# place every table is registered (Alembic's env imports it).
from tracker.models.claim import (  # noqa: E402, F401  (re-exported)
    CLAIM_TO_PAYOUT,
    FINAL_CLAIM_STATES,
    Claim,
    ClaimBase,
    ClaimCreate,
    ClaimPublic,
    ClaimState,
    ClaimStateChange,
    ClaimStateChangePublic,
)
from tracker.models.issuer import (  # noqa: E402, F401  (re-exported)
    ApiToken,
    Issuer,
    IssuerKind,
    IssuerPublic,
    PayoutSource,
    WebhookDelivery,
)
from tracker.models.rollup import PayoutCardTotal, PayoutDaily  # noqa: E402, F401
from tracker.models.station import (  # noqa: E402, F401  (re-exported)
    HeartbeatCreate,
    HeartbeatPublic,
    Station,
    StationBase,
    StationCreate,
    StationHeartbeat,
    StationOverview,
    StationPublic,
)

PayoutDetail.model_rebuild()

__all__ = [name for name in dir() if not name.startswith("_")]
