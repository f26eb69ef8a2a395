"""The station family: a station and its token hash, and the latest heartbeat it sent.

``Station.token_hash`` exists only in the table model, so no route can show it.
``HeartbeatCreate`` is what a station posts every period (``POST /api/v1/stations/heartbeat``);
``StationHeartbeat`` keeps only the latest one per station (health is "now", not a history);
``StationOverview`` is the one shape operators read a station in — the API list, the stations
page and the metrics all use it — with its health worked out once (:attr:`StationOverview.state`).
"""

import math
from datetime import datetime
from typing import Literal

from pydantic import field_validator, model_validator
from sqlmodel import Field, SQLModel

from tracker.models import BigId, UTCDateTime, utcnow
from tracker.models.checks import CheckedInput

#: A station is offline when no heartbeat came for this many of its own periods.
OFFLINE_AFTER_PERIODS = 3
#: Bounds of what a station may report (a broken station must get a 422, never a 500).
MAX_PERIOD_S = 3600.0
MIN_PERIOD_S = 0.2
MAX_UPTIME_S = 10 * 366 * 86400  # fits a 32-bit column
MAX_RECORDS = 1_000_000_000
MAX_READERS = 64


class StationBase(SQLModel):
    name: str = Field(min_length=1, max_length=100)


class StationCreate(StationBase):
    pass


class Station(StationBase, table=True):
    __tablename__ = "station"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    name: str = Field(max_length=100, unique=True)
    #: SHA-256 of the station token; None for stations that write straight into the database.
    token_hash: str | None = Field(default=None, max_length=64, unique=True)
    created: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_seen: datetime | None = Field(default=None, sa_type=UTCDateTime)


class StationPublic(StationBase):
    id: int
    created: datetime
    last_seen: datetime | None
    has_token: bool = False


class HeartbeatBase(SQLModel):
    """What a station says about itself; the station's clock is used only for ``started_at``
    (``uptime_s`` is measured on its monotonic clock, so a wrong wall clock does not lie)."""

    version: str = Field(min_length=1, max_length=40)
    started_at: datetime
    uptime_s: int = Field(ge=0, le=MAX_UPTIME_S)
    #: Seconds between two heartbeats of this station: the tracker calls it offline after
    #: :data:`OFFLINE_AFTER_PERIODS` of them without one.
    period_s: float = Field(ge=MIN_PERIOD_S, le=MAX_PERIOD_S)
    #: Records waiting in the station's outbox (taps and claims not yet stored here).
    outbox_pending: int = Field(ge=0, le=MAX_RECORDS)
    #: Records this tracker refused for good; the station never sends them again.
    outbox_dead: int = Field(ge=0, le=MAX_RECORDS)
    readers_present: int = Field(ge=0, le=MAX_READERS)
    readers_total: int = Field(ge=0, le=MAX_READERS)
    #: What is wrong at the station now, in words (the tracker unreachable, disk full…).
    problem: str | None = Field(default=None, max_length=300)


class HeartbeatCreate(HeartbeatBase, CheckedInput):
    @field_validator("started_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("started_at must be ISO 8601 with a UTC offset")
        return value

    @field_validator("period_s")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("period_s must be a finite number of seconds")
        return value

    @model_validator(mode="after")
    def _readers(self) -> "HeartbeatCreate":
        if self.readers_present > self.readers_total:
            raise ValueError("readers_present cannot exceed readers_total")
        return self


class StationHeartbeat(HeartbeatBase, table=True):
    """The latest heartbeat of each station (one row per station, replaced each time)."""

    __tablename__ = "station_heartbeat"

    station_pk: int = Field(primary_key=True, foreign_key="station.id", sa_type=BigId)
    #: When the tracker received it (the tracker's clock decides online/offline).
    received_at: datetime = Field(sa_type=UTCDateTime)
    started_at: datetime = Field(sa_type=UTCDateTime)


class HeartbeatPublic(HeartbeatBase):
    received_at: datetime


StationState = Literal["online", "offline", "never"]


class StationOverview(StationPublic):
    """A station as operators see it: identity, latest heartbeat, health, taps today."""

    heartbeat: HeartbeatPublic | None = None
    state: StationState = "never"
    #: Taps received from this station since midnight in the operator's time zone.
    taps_today: int = 0

    @property
    def state_words(self) -> str:
        return {"online": "online", "offline": "offline", "never": "never reported"}[self.state]


def station_state(beat: HeartbeatPublic | None, now: datetime) -> StationState:
    """Online while the last heartbeat is younger than :data:`OFFLINE_AFTER_PERIODS` of the
    station's own periods (by the tracker's clock)."""
    if beat is None:
        return "never"
    age = (now - beat.received_at).total_seconds()
    return "online" if age <= OFFLINE_AFTER_PERIODS * beat.period_s else "offline"
