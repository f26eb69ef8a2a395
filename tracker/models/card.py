"""Cards: what an operator keeps about one Bolt Card (alias, holder, notes, block record)
and the shapes the API and pages show. Part of :mod:`tracker.models` (re-exported there)."""

from datetime import datetime

from pydantic import computed_field, field_validator, model_validator
from sqlmodel import Field, SQLModel

from tracker import labels
from tracker.models import BigId, CardStatus, UTCDateTime, utcnow
from tracker.models.checks import CheckedInput


class CardBase(SQLModel):
    alias: str | None = Field(default=None, max_length=100)
    notes: str | None = Field(default=None, max_length=2000)
    #: Who carries the card (a person, a team): free text an operator keeps.
    holder: str | None = Field(default=None, max_length=100)


class CardUpdate(CheckedInput):
    """Admin edits. Status may only be set to active or blocked (wiping happens at a station)."""

    alias: str | None = Field(default=None, max_length=100)
    notes: str | None = Field(default=None, max_length=2000)
    holder: str | None = Field(default=None, max_length=100)
    status: CardStatus | None = None
    #: Why the card is blocked or unblocked: required with ``status``, kept on the card (who,
    #: when, why) and in the audit log.
    reason: str | None = Field(default=None, max_length=500)

    @field_validator("status")
    @classmethod
    def _only_block_or_unblock(cls, value: CardStatus | None) -> CardStatus | None:
        if value is not None and value not in (CardStatus.active, CardStatus.blocked):
            raise ValueError("status can only be set to 'active' or 'blocked'")
        return value

    @model_validator(mode="after")
    def _status_needs_a_reason(self) -> "CardUpdate":
        if self.reason is not None:
            self.reason = self.reason.strip() or None
        if self.status is not None and self.reason is None:
            raise ValueError("say why: 'reason' is required to block or unblock a card")
        return self


class Card(CardBase, table=True):
    __tablename__ = "card"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    uid: str = Field(max_length=20, unique=True)
    card_id: str | None = Field(default=None, max_length=64, index=True)
    status: str = Field(default=CardStatus.active, max_length=16, index=True)
    last_counter: int | None = Field(default=None)
    first_seen: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_seen: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    blocked_reason: str | None = Field(default=None, max_length=500)
    blocked_by: str | None = Field(default=None, max_length=100)
    blocked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class CardPublic(CardBase):
    uid: str
    card_id: str | None
    status: CardStatus
    last_counter: int | None
    first_seen: datetime
    last_seen: datetime
    blocked_reason: str | None = None
    blocked_by: str | None = None
    blocked_at: datetime | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def card_label(self) -> str | None:
        """How lists name the card (alias, else ``04A1…E5F6``), as on taps and payouts."""
        return labels.card_label(self.uid, self.alias)


class CardDetail(CardPublic):
    """Per-card page: the card plus totals computed from its taps and payouts."""

    tap_count: int = 0
    refused_count: int = 0
    #: Taps filed under this UID that do not prove it (bad MAC, foreign card): not in the
    #: counts above, nor in the counters.
    unverified_count: int = 0
    payout_count: int = 0
    completed_amount_msat: int = 0
    stations: list[str] = Field(default_factory=list)
    #: Counters that were skipped between consecutive accepted taps (gaps are worth a look:
    #: the card was used somewhere we did not see).
    counter_gaps: list[tuple[int, int]] = Field(default_factory=list)


class CardStatusPublic(SQLModel):
    uid: str
    status: str  # active | blocked | wiped | unknown
    last_counter: int | None
