"""Operator sessions kept in the database, so they can be ended.

The cookie stays signed (it also carries the user id, the session's CSRF token and an expiry),
but a valid signature is no longer enough: the session's random id must still have its row in
``operator_session``. Deleting the row - logout, a password or role change, disabling or
removing the user - ends the session at the next request in every tracker process, and open
event streams re-check it every few seconds (:data:`RECHECK_SECONDS`). Only the SHA-256 of the
id is stored, so a database dump holds no usable session.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col

from tracker.db import write_lock
from tracker.models import OperatorSession, User, utcnow

#: How often an open event stream asks whether its session still exists.
RECHECK_SECONDS = 2.0


def _hash(sid: str) -> str:
    return hashlib.sha256(sid.encode("utf-8")).hexdigest()


def start(session: Session, *, user_id: int, ttl_s: int, now: datetime | None = None) -> str:
    """Store a new session for ``user_id`` and return its id (for the cookie only)."""
    now = now or utcnow()
    sid = secrets.token_urlsafe(32)
    table = OperatorSession.__table__  # type: ignore[attr-defined]
    with write_lock(session):
        session.execute(sa.delete(table).where(table.c.expires < now))
        session.execute(
            sa.insert(table).values(
                sid_hash=_hash(sid), user_pk=user_id, created=now,
                expires=now + timedelta(seconds=ttl_s),
            )
        )
        session.commit()
    return sid


def user_of(session: Session, *, sid: str, user_id: int) -> User | None:
    """The enabled user owning live session ``sid``, else None (ended, expired, disabled)."""
    row = session.execute(
        sa.select(User)
        .join(OperatorSession, col(OperatorSession.user_pk) == col(User.id))
        .where(
            col(OperatorSession.sid_hash) == _hash(sid),
            col(User.id) == user_id,
            col(OperatorSession.expires) > utcnow(),
            col(User.disabled).is_(False),
        )
    ).scalar_one_or_none()
    if row is not None:
        session.expunge(row)
    return row


def end(session: Session, *, sid: str) -> None:
    """Logout: this browser's session only."""
    with write_lock(session):
        session.execute(
            sa.delete(OperatorSession.__table__).where(  # type: ignore[attr-defined]
                col(OperatorSession.sid_hash) == _hash(sid)
            )
        )
        session.commit()


def end_all(session: Session, *, user_id: int) -> int:
    """Every session of ``user_id`` (in the caller's transaction; the caller commits)."""
    result = session.execute(
        sa.delete(OperatorSession.__table__).where(  # type: ignore[attr-defined]
            col(OperatorSession.user_pk) == user_id
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
