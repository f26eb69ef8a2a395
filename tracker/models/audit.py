"""The audit log: one row per operator action (sign-in, card edits, users, tokens, stations,
issuers). Part of :mod:`tracker.models` (re-exported there).

Rows are written by :mod:`tracker.services.audit` only and never changed. ``detail`` is a
short sentence for people; it never holds a secret (a token, a password, a key or its hash).
"""

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from tracker.models import BigId, UTCDateTime, utcnow


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_event"
    __table_args__ = (
        sa.Index("ix_audit_event_at", "at", "id"),
        sa.Index("ix_audit_event_actor_at", "actor", "at", "id"),
        sa.Index("ix_audit_event_action_at", "action", "at", "id"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    #: The operator's username; for the command line ``cli:<OS user>``.
    actor: str = Field(max_length=120)
    #: How the actor was known: ``session`` (signed in), ``token`` (API token), ``cli``, or
    #: ``anonymous`` (a failed sign-in: ``actor`` is the name that was typed).
    actor_kind: str = Field(max_length=16)
    action: str = Field(max_length=48)
    target_type: str | None = Field(default=None, max_length=32)
    target_id: str | None = Field(default=None, max_length=200)
    detail: str | None = Field(default=None, max_length=500)
    #: The client address for web actions; None from the command line.
    address: str | None = Field(default=None, max_length=64)


class AuditEventPublic(SQLModel):
    """One audit row as the page, the API and the exports show it."""

    id: int
    at: datetime
    actor: str
    actor_kind: str
    action: str
    target_type: str | None = None
    target_id: str | None = None
    detail: str | None = None
    address: str | None = None
