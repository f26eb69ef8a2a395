"""Operator accounts (created from the CLI; the sign-in page reads them)."""

from __future__ import annotations

import functools

from sqlmodel import Session, col, select

from tracker.models import Role, User, UserPublic
from tracker.security import hash_password, verify_password


class UserExists(ValueError):
    """That username is taken; choose another or change the existing user's password."""


def to_public(user: User) -> UserPublic:
    assert user.id is not None
    return UserPublic(
        id=user.id, username=user.username, role=Role(user.role), created=user.created
    )


def create_user(session: Session, *, username: str, password: str, role: Role) -> UserPublic:
    username = username.strip()
    if not username:
        raise ValueError("username must not be empty")
    if session.exec(select(User).where(col(User.username) == username)).first() is not None:
        raise UserExists(f"user {username!r} already exists")
    user = User(username=username, role=role.value, password_hash=hash_password(password))
    session.add(user)
    session.commit()
    session.refresh(user)
    return to_public(user)


def set_password(session: Session, *, username: str, password: str) -> None:
    user = session.exec(select(User).where(col(User.username) == username)).first()
    if user is None:
        raise LookupError(f"no user named {username!r}")
    user.password_hash = hash_password(password)
    session.add(user)
    session.commit()


def authenticate(session: Session, *, username: str, password: str) -> UserPublic | None:
    """The user if the password matches, else None (same answer for unknown users)."""
    user = session.exec(select(User).where(col(User.username) == username)).first()
    if user is None:
        # Spend the same time as a real check so timing does not reveal valid usernames.
        verify_password(password, _dummy_hash())
        return None
    return to_public(user) if verify_password(password, user.password_hash) else None


def list_users(session: Session) -> list[UserPublic]:
    return [to_public(u) for u in session.exec(select(User).order_by(col(User.username))).all()]


@functools.cache
def _dummy_hash() -> str:
    return hash_password("timing-equaliser")
