"""Sign-in attempts counted in the database, before the password is checked.

Why the database and not memory: the limit must hold across several tracker processes and
restarts, and a table cannot be emptied by spraying other usernames the way a bounded memo can.

Why count first: checking "under the limit?" and counting the failure after the (slow, scrypt)
verification let parallel guesses all pass the check. Here every attempt first commits its row
and only then counts the rows of its window, itself included. Of N parallel attempts the one
whose row committed k-th sees at least k rows, so at most ``limit`` of them are let through to
the password check; the others delete their own row again (a refused attempt costs the
attacker nothing and does not prolong a real user's wait) and are answered 429.

Three limits in one window: per (address, username), per username from any address (so
rotating addresses does not help), and per address over all usernames (so one address cannot
spray names). A successful sign-in clears that user's rows from that address.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col

from tracker.db import write_lock
from tracker.models import LoginAttempt, utcnow

#: Longest username / address stored (the form allows 200 characters; IPv6 text is ≤ 45).
USERNAME_MAX = 200
ADDRESS_MAX = 64


@dataclass(frozen=True)
class LoginLimits:
    """How many attempts a window allows, per scope."""

    per_user_address: int = 5
    per_user: int = 10
    per_address: int = 30
    window_s: int = 300


def _norm_user(username: str) -> str:
    return username.strip().lower()[:USERNAME_MAX]


class LoginAttempts:
    """The limiter over ``login_attempt``; one per app, built from its session factory."""

    def __init__(
        self,
        sessions: Callable[[], Session],
        limits: LoginLimits | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.limits = limits or LoginLimits()
        self.clock = clock

    def attempt(self, address: str, username: str) -> int:
        """Count one attempt; 0 = go on and check the password, else seconds to wait."""
        user, address = _norm_user(username), address[:ADDRESS_MAX]
        now = self.clock()
        window = timedelta(seconds=self.limits.window_s)
        table = LoginAttempt.__table__  # type: ignore[attr-defined]
        with self.sessions() as session:
            with write_lock(session):
                session.execute(sa.delete(table).where(table.c.at < now - window))
                row_id = session.execute(
                    sa.insert(table).values(username=user, address=address, at=now)
                    .returning(table.c.id)
                ).scalar_one()
                session.commit()
            wait = self._wait(session, user=user, address=address, now=now, window=window)
            if wait:
                with write_lock(session):
                    session.execute(sa.delete(table).where(table.c.id == row_id))
                    session.commit()
            return wait

    def _wait(
        self, session: Session, *, user: str, address: str, now: datetime, window: timedelta
    ) -> int:
        recent = col(LoginAttempt.at) >= now - window
        by_user = col(LoginAttempt.username) == user
        by_address = col(LoginAttempt.address) == address
        scopes = (
            (sa.and_(by_user, by_address), self.limits.per_user_address),
            (by_user, self.limits.per_user),
            (by_address, self.limits.per_address),
        )
        wait = 0
        for where, limit in scopes:
            count, oldest = session.execute(
                sa.select(sa.func.count(), sa.func.min(col(LoginAttempt.at))).where(recent, where)
            ).one()
            if count > limit and oldest is not None:
                left = (oldest + window - now).total_seconds()
                wait = max(wait, int(left) + 1)
        return wait

    def succeeded(self, address: str, username: str) -> None:
        """The password was right: forget this user's attempts from this address."""
        with self.sessions() as session, write_lock(session):
            session.execute(
                sa.delete(LoginAttempt.__table__).where(  # type: ignore[attr-defined]
                    col(LoginAttempt.username) == _norm_user(username),
                    col(LoginAttempt.address) == address[:ADDRESS_MAX],
                )
            )
            session.commit()
