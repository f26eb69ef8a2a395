"""Operator accounts (created and managed from the CLI; the sign-in page reads them).

Every change that should take away access - a new password, another role, disabling,
removal - deletes the user's sessions in the same transaction (see
:mod:`tracker.services.sessions`), so it holds at the next request in every tracker process.
"""

from __future__ import annotations

import functools

from sqlmodel import Session, col, select

from tracker.db import write_lock
from tracker.models import Role, User, UserPublic
from tracker.security import hash_password, verify_password
from tracker.services import sessions


class UserExists(ValueError):
    """That username is taken; choose another or change the existing user's password."""


class UserNotFound(LookupError):
    """No user by that name; `tracker users list` shows who exists."""


def to_public(user: User) -> UserPublic:
    assert user.id is not None
    return UserPublic(
        id=user.id,
        username=user.username,
        role=Role(user.role),
        created=user.created,
        disabled=bool(user.disabled),
    )


def create_user(session: Session, *, username: str, password: str, role: Role) -> UserPublic:
    username = username.strip()
    if not username:
        raise ValueError("username must not be empty")
    with write_lock(session):
        if session.exec(select(User).where(col(User.username) == username)).first() is not None:
            raise UserExists(f"user {username!r} already exists")
        user = User(username=username, role=role.value, password_hash=hash_password(password))
        session.add(user)
        session.commit()
    session.refresh(user)
    return to_public(user)


def _get(session: Session, username: str) -> User:
    user = session.exec(select(User).where(col(User.username) == username.strip())).first()
    if user is None:
        raise UserNotFound(f"no user named {username!r}; `tracker users list` shows who exists")
    return user


def _change(session: Session, user: User) -> UserPublic:
    """Store ``user`` and end all its sessions, in one transaction."""
    assert user.id is not None
    session.add(user)
    sessions.end_all(session, user_id=user.id)
    session.commit()
    return to_public(user)


def set_password(session: Session, *, username: str, password: str) -> UserPublic:
    with write_lock(session):
        user = _get(session, username)
        user.password_hash = hash_password(password)
        return _change(session, user)


def set_role(session: Session, *, username: str, role: Role) -> UserPublic:
    with write_lock(session):
        user = _get(session, username)
        user.role = role.value
        return _change(session, user)


def set_disabled(session: Session, *, username: str, disabled: bool = True) -> UserPublic:
    with write_lock(session):
        user = _get(session, username)
        user.disabled = disabled
        return _change(session, user)


def remove_user(session: Session, *, username: str) -> UserPublic:
    with write_lock(session):
        user = _get(session, username)
        assert user.id is not None
        public = to_public(user)
        sessions.end_all(session, user_id=user.id)
        session.delete(user)
        session.commit()
        return public


def authenticate(session: Session, *, username: str, password: str) -> UserPublic | None:
    """The user if the password matches, else None (same answer for unknown users)."""
    user = session.exec(select(User).where(col(User.username) == username)).first()
    if user is None or user.disabled:
        # Spend the same time as a real check so timing does not reveal valid usernames.
        verify_password(password, _dummy_hash())
        return None
    return to_public(user) if verify_password(password, user.password_hash) else None


def list_users(session: Session) -> list[UserPublic]:
    return [to_public(u) for u in session.exec(select(User).order_by(col(User.username))).all()]


@functools.cache
def _dummy_hash() -> str:
    return hash_password("timing-equaliser")
