"""Operator API tokens: ``Authorization: Bearer bcop_…`` on the operator routes under
``/api/v1``, with the role of the user the token belongs to.

A token is 256 random bits shown once; only its SHA-256 is stored (a fast hash is enough for
a random secret, as for station tokens). ``prefix`` (its first characters after ``bcop_``) names
it in ``tracker tokens revoke`` without storing anything that would let someone use it.
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from sqlmodel import Session, col

from tracker.db import write_lock
from tracker.models import ApiToken, User, utcnow
from tracker.security import hash_token

OPERATOR_TOKEN_PREFIX = "bcop_"
_SHOWN = 8


class TokenError(LookupError):
    """No such user or token (the message says which)."""


def create_token(session: Session, *, username: str) -> tuple[int, str, str]:
    """``(token id, token, role)`` for a new token of ``username``; commits."""
    user = session.execute(
        sa.select(User).where(col(User.username) == username)
    ).scalar_one_or_none()
    if user is None or user.id is None:
        raise TokenError(f"no user named {username!r}; create one with `tracker users add`")
    token = OPERATOR_TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        user_pk=user.id,
        token_hash=hash_token(token),
        prefix=token[len(OPERATOR_TOKEN_PREFIX) :][:_SHOWN],
    )
    with write_lock(session):
        session.add(row)
        session.commit()
    assert row.id is not None
    return row.id, token, user.role


def revoke_token(session: Session, *, which: str) -> int:
    """Revoke by id, by the whole token, or by a prefix that names exactly one token."""
    text = which.strip()
    if text.startswith(OPERATOR_TOKEN_PREFIX) and len(text) > 20:
        condition = col(ApiToken.token_hash) == hash_token(text)
    elif text.isdigit():
        condition = col(ApiToken.id) == int(text)
    else:
        prefix = text.removeprefix(OPERATOR_TOKEN_PREFIX)[:_SHOWN]
        if len(prefix) < 4:
            raise TokenError("give the token id or at least 4 characters of the token")
        condition = col(ApiToken.prefix).startswith(prefix)
    rows = session.execute(
        sa.select(ApiToken).where(condition, col(ApiToken.revoked).is_(None))
    ).scalars().all()
    if len(rows) != 1:
        raise TokenError(
            "no active token matches" if not rows else "several tokens match; use the token id"
        )
    with write_lock(session):
        rows[0].revoked = utcnow()
        session.add(rows[0])
        session.commit()
    assert rows[0].id is not None
    return rows[0].id


def authenticate(session: Session, token: str) -> tuple[int, str, str] | None:
    """``(user id, username, role)`` of an active token, else None."""
    if not token.startswith(OPERATOR_TOKEN_PREFIX) or len(token) > 200:
        return None
    found = session.execute(
        sa.select(col(User.id), col(User.username), col(User.role))
        .join(ApiToken, col(ApiToken.user_pk) == col(User.id))
        .where(col(ApiToken.token_hash) == hash_token(token), col(ApiToken.revoked).is_(None))
    ).first()
    if found is None:
        return None
    return int(found[0]), str(found[1]), str(found[2])
