"""The audit log of operator actions: the one place that writes and reads ``audit_event``.

Why one service: every action an operator takes (sign-in, card edits, users, tokens,
stations, issuers) is recorded the same way, from the web and from the command line, so the
``/audit`` page, ``GET /api/v1/audit`` and the exports read one shape.

Callers pass the :class:`Actor` (who, how known, from where) and a short ``detail`` for
people. A detail never holds a secret: no token, password, key, or hash of one. :func:`add`
puts the row into the caller's transaction (the card service uses it, so the change and its
record commit together); :func:`record` writes it in a transaction of its own, after the
action (the CLI and the sign-in routes, whose actions commit inside other services).
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlmodel import Session, col

from tracker.db import write_lock
from tracker.models import AuditEvent, AuditEventPublic
from tracker.services import export as export_service
from tracker.services.filters import as_utc, keyset_page

#: Every action the log knows, with the words the page shows. The code is what filters and
#: exports carry.
ACTIONS: dict[str, str] = {
    "auth.login": "signed in",
    "auth.login_failed": "failed to sign in",
    "auth.logout": "signed out",
    "card.alias": "renamed a card",
    "card.holder": "set a card's holder",
    "card.notes": "changed a card's notes",
    "card.block": "blocked a card",
    "card.unblock": "unblocked a card",
    "user.add": "added a user",
    "user.disable": "disabled a user",
    "user.remove": "removed a user",
    "user.passwd": "set a user's password",
    "user.role": "changed a user's role",
    "token.add": "added an API token",
    "token.revoke": "revoked an API token",
    "station.add": "added a station",
    "station.revoke": "revoked a station's token",
    "station.rotate": "rotated a station's token",
    "issuer.add": "added an issuer",
    "issuer.remove": "removed an issuer",
}
EXPORT_FIELDS = (
    "id",
    "at",
    "actor",
    "actor_kind",
    "action",
    "action_text",
    "target_type",
    "target_id",
    "detail",
    "address",
)
_DETAIL_MAX = 500


class UnknownAction(ValueError):
    """Not an action the audit log records; :data:`ACTIONS` lists them."""


@dataclass(frozen=True)
class Actor:
    """Who did it: an operator's username (``kind`` session or token), ``cli:<OS user>``
    from the command line, or the name typed into a failed sign-in (``anonymous``)."""

    name: str
    kind: str
    address: str | None = None


def cli_actor() -> Actor:
    """The command line's actor: ``cli:<OS user>`` (the uid when the OS has no name for it)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid {os.getuid()}"
    return Actor(name=f"cli:{user}", kind="cli")


def _clip(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    # Only single-line text is stored: a line break in a detail would forge a second line in
    # a plain-text view of the log.
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def add(
    session: Session,
    *,
    actor: Actor,
    action: str,
    target_type: str | None = None,
    target_id: str | None = None,
    detail: str | None = None,
) -> None:
    """Add one event to the caller's transaction (it commits with the action it records)."""
    if action not in ACTIONS:
        raise UnknownAction(f"unknown audit action {action!r}")
    session.add(
        AuditEvent(
            actor=_clip(actor.name, 120) or "?",
            actor_kind=actor.kind,
            action=action,
            target_type=target_type,
            target_id=_clip(target_id, 200),
            detail=_clip(detail, _DETAIL_MAX),
            address=_clip(actor.address, 64),
        )
    )


def record(
    session: Session,
    *,
    actor: Actor,
    action: str,
    target_type: str | None = None,
    target_id: str | None = None,
    detail: str | None = None,
) -> None:
    """Write one event in its own transaction (after an action that committed already)."""
    with write_lock(session):
        add(
            session,
            actor=actor,
            action=action,
            target_type=target_type,
            target_id=target_id,
            detail=detail,
        )
        session.commit()


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class AuditFilter:
    """``None`` means "do not filter on this". ``since`` inclusive, ``until`` exclusive."""

    actor: str | None = None
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _to_public(row: Any) -> AuditEventPublic:
    return AuditEventPublic(
        id=row.id,
        at=row.at,
        actor=row.actor,
        actor_kind=row.actor_kind,
        action=row.action,
        target_type=row.target_type,
        target_id=row.target_id,
        detail=row.detail,
        address=row.address,
    )


def filtered_select(flt: AuditFilter) -> sa.Select[Any]:
    """Events matching ``flt``, newest first (by ``(at, id)``)."""
    conditions: list[Any] = []
    if flt.actor:
        conditions.append(col(AuditEvent.actor) == flt.actor)
    if flt.action:
        conditions.append(col(AuditEvent.action) == flt.action)
    if flt.target_type:
        conditions.append(col(AuditEvent.target_type) == flt.target_type)
    if flt.target_id:
        conditions.append(col(AuditEvent.target_id) == flt.target_id)
    if flt.since is not None:
        conditions.append(col(AuditEvent.at) >= as_utc(flt.since))
    if flt.until is not None:
        conditions.append(col(AuditEvent.at) < as_utc(flt.until))
    table = AuditEvent.__table__  # type: ignore[attr-defined]
    return (
        sa.select(*table.columns)
        .where(*conditions)
        .order_by(col(AuditEvent.at).desc(), col(AuditEvent.id).desc())
    )


def list_events(
    session: Session, *, flt: AuditFilter | None = None, cursor: str | None = None, limit: int = 50
) -> tuple[list[AuditEventPublic], str | None]:
    """One page of events, newest first, and the next page's cursor (None at the end).
    Raises :class:`~tracker.services.filters.InvalidCursor` for a cursor it did not make."""
    return keyset_page(
        session,
        filtered_select(flt or AuditFilter()),
        keys=(col(AuditEvent.at), col(AuditEvent.id)),
        cursor=cursor,
        limit=limit,
        to_public=_to_public,
    )


def actors(session: Session, *, limit: int = 200) -> list[str]:
    """Names that appear as actors (for the page's filter), most recent first."""
    last = sa.func.max(col(AuditEvent.at))
    rows = session.execute(
        sa.select(col(AuditEvent.actor))
        .where(col(AuditEvent.actor_kind) != "anonymous")
        .group_by(col(AuditEvent.actor))
        .order_by(last.desc())
        .limit(limit)
    ).scalars()
    return list(rows)


# --- exports ---------------------------------------------------------------------------------


def _record_of(event: Any) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": event.at,
        "actor": event.actor,
        "actor_kind": event.actor_kind,
        "action": event.action,
        "action_text": ACTIONS.get(event.action, event.action),
        "target_type": event.target_type,
        "target_id": event.target_id,
        "detail": event.detail,
        "address": event.address,
    }


def events_csv(engine: Engine, *, flt: AuditFilter) -> Iterator[str]:
    """Every matching event as CSV; cells a spreadsheet would run as a formula are neutralised
    like the other exports' (an alias or a typed user name is free text)."""
    return export_service.csv_rows(engine, filtered_select(flt), EXPORT_FIELDS, _record_of)


def events_json(engine: Engine, *, flt: AuditFilter) -> Iterator[str]:
    return export_service.json_rows(engine, filtered_select(flt), _record_of)
