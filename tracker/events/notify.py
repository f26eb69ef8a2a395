"""Announcing committed writes: :func:`notify`, called inside the writer's transaction.

On PostgreSQL that is a ``pg_notify`` which the server delivers only when the transaction
commits, to every tracker process that LISTENs - so several processes behind a load balancer
all stay live. SQLite has no such channel: the watcher polls for new taps and payouts (which
also catches rows a station process wrote straight into the file); card edits leave no new row
to poll, so on SQLite :func:`notify` hands those, after commit, to the watchers of the same
:class:`~tracker.db.Database` (:class:`LocalListeners`).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy import text

from tracker.db import Database, database_of

log = logging.getLogger(__name__)

CHANNEL = "tracker_events"
TOPICS = frozenset({"tap", "payout", "card", "station"})
#: Topics the SQLite watcher finds by polling; the rest are delivered in-process on commit.
POLLED_TOPICS = frozenset({"tap", "payout"})
# PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; stay well below.
_MAX_PAYLOAD = 7000


@dataclass(frozen=True)
class Event:
    """One change the operator pages may want to show."""

    topic: str
    data: dict[str, Any] = field(default_factory=dict)

    def sse(self) -> str:
        """The event in ``text/event-stream`` framing."""
        body = json.dumps(self.data, default=str, separators=(",", ":"))
        return f"event: {self.topic}\ndata: {body}\n\n"


class Listener(Protocol):
    def deliver_threadsafe(self, event: Event) -> None: ...


class LocalListeners:
    """The running watchers of one :class:`~tracker.db.Database` (SQLite, non-polled topics)."""

    def __init__(self) -> None:
        self._listeners: set[Listener] = set()
        self._lock = threading.Lock()

    def add(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.add(listener)

    def discard(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.discard(listener)

    def publish(self, event: Event) -> None:
        """Hand ``event`` to every running watcher (from any thread)."""
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener.deliver_threadsafe(event)


def local_listeners(database: Database) -> LocalListeners:
    return database.shared("events.local_listeners", LocalListeners)  # type: ignore[no-any-return]


def notify(session: Any, topic: str, payload: dict[str, Any]) -> None:
    """Announce a change from inside the writer's transaction; it is delivered on commit.

    ``payload`` must carry the row's ``id`` (``uid`` for a card). PostgreSQL: ``pg_notify`` on
    the ``tracker_events`` channel. SQLite: taps and payouts are found by the watcher's polling;
    other topics go to this process's hubs after commit.
    """
    if topic not in TOPICS:
        raise ValueError(f"unknown event topic {topic!r}; use one of {sorted(TOPICS)}")
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_notify(:channel, :body)"),
            {"channel": CHANNEL, "body": encode(topic, payload)},
        )
        return
    if topic in POLLED_TOPICS:
        return
    event = Event(topic, dict(payload))
    listeners = local_listeners(database_of(session))
    sa.event.listen(session, "after_commit", lambda _s: listeners.publish(event), once=True)


def encode(topic: str, payload: dict[str, Any]) -> str:
    body = json.dumps({"topic": topic, "data": payload}, default=str, separators=(",", ":"))
    if len(body.encode()) > _MAX_PAYLOAD:
        small = {k: payload[k] for k in ("id", "uid") if k in payload}
        body = json.dumps({"topic": topic, "data": small}, default=str, separators=(",", ":"))
    return body


def decode(raw: str) -> Event | None:
    try:
        message = json.loads(raw)
        topic, data = message["topic"], message.get("data") or {}
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring a malformed %s notification", CHANNEL)
        return None
    if topic not in TOPICS or not isinstance(data, dict):
        return None
    return Event(topic, data)
