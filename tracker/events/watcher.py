"""Feeding a hub from the database: LISTEN on PostgreSQL, polling on SQLite.

Notifications carry ids; the watcher loads the row once per process through the same
services as the API (:class:`~tracker.models.TapPublic`, :class:`~tracker.models.PayoutPublic`)
and publishes that one public shape, which static/live.js draws.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import Engine, text

from tracker import labels
from tracker.db import Database
from tracker.events.hub import EventHub
from tracker.events.notify import CHANNEL, Event, decode, local_listeners
from tracker.models import Card, PayoutStateChange
from tracker.services.payouts import payouts_by_ids
from tracker.services.taps.query import taps_after

log = logging.getLogger(__name__)

#: Most rows per table one SQLite poll turns into events.
MAX_BACKLOG = 500


def load_taps(engine: Engine, *, after_id: int, limit: int = 200) -> list[dict[str, Any]]:
    """Taps with id > ``after_id`` in id order, in their public shape."""
    with engine.connect() as conn:
        taps = taps_after(conn, after_id=after_id, limit=limit)
    return [t.model_dump(mode="json") for t in taps]


def load_payouts(engine: Engine, ids: list[int]) -> list[dict[str, Any]]:
    """Payouts by id, in their public shape."""
    with engine.connect() as conn:
        payouts = payouts_by_ids(conn, ids)
    return [p.model_dump(mode="json") for p in payouts]


def load_card(engine: Engine, uid: str) -> dict[str, Any] | None:
    card = cast(sa.Table, Card.__table__).c  # type: ignore[attr-defined]
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(card.uid, card.alias, card.status, card.last_counter).where(card.uid == uid)
        ).first()
    if row is None:
        return None
    return {
        "uid": row.uid,
        "alias": row.alias,
        "card_label": labels.card_label(row.uid, row.alias),
        "status": str(row.status),
        "last_counter": row.last_counter,
        "url": f"/cards/{row.uid}",
    }


def enrich(engine: Engine, event: Event) -> list[Event]:
    """Turn an id-only event into render-ready events (blocking: run it in a thread)."""
    data = event.data
    try:
        if event.topic == "tap" and "id" in data:
            return [
                Event("tap", d) for d in load_taps(engine, after_id=int(data["id"]) - 1, limit=1)
            ]
        if event.topic == "payout" and "id" in data:
            return [Event("payout", d) for d in load_payouts(engine, [int(data["id"])])]
        if event.topic == "card" and "uid" in data:
            card = load_card(engine, str(data["uid"]))
            return [Event("card", card)] if card else []
    except (ValueError, TypeError):
        log.warning("ignoring a %s event with a malformed id", event.topic)
        return []
    return [event]


class Watcher:
    """Feeds one hub from the database: LISTEN on PostgreSQL, polling on SQLite."""

    def __init__(
        self,
        hub: EventHub,
        engine: Engine,
        *,
        database_url: str,
        interval: float = 0.3,
        database: Database | None = None,
    ) -> None:
        self.hub = hub
        self.engine = engine
        #: Card edits committed through this database's sessions reach us in-process (SQLite).
        self.database = database or Database(engine)
        self.database_url = database_url
        self.interval = interval
        self._marks: tuple[int, int, int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: set[asyncio.Task[None]] = set()
        # Before the task runs: a page subscribing right now must wait for the LISTEN.
        hub.needs_listener = engine.dialect.name == "postgresql"

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        listeners = local_listeners(self.database)
        listeners.add(self)
        try:
            if self.engine.dialect.name == "postgresql":
                await self._listen_forever()
            else:
                await self._poll_forever()
        finally:
            listeners.discard(self)

    def deliver_threadsafe(self, event: Event) -> None:
        """Load and publish ``event`` on the watcher's loop (callable from any thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def start() -> None:
            task = loop.create_task(self.deliver(event))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

        with contextlib.suppress(RuntimeError):  # the loop shut down meanwhile
            loop.call_soon_threadsafe(start)

    # SQLite ----------------------------------------------------------------------------------

    _MARKS_SQL = text(
        "SELECT (SELECT coalesce(max(id), 0) FROM tap),"
        " (SELECT coalesce(max(id), 0) FROM payout),"
        " (SELECT coalesce(max(id), 0) FROM payout_state_change)"
    )

    def _read_marks(self) -> tuple[int, int, int]:
        with self.engine.connect() as conn:
            row = conn.execute(self._MARKS_SQL).one()
        return int(row[0]), int(row[1]), int(row[2])

    def poll_once(self, *, only_if_watched: bool = False) -> list[Event]:
        """Events for rows committed since the last call (blocking).

        ``only_if_watched``: while the hub has no subscriber, move the marks on without loading
        any row (nobody would see them). The subscriber count is read after the marks, so a row
        committed after a page subscribed is never skipped.
        """
        marks = self._read_marks()
        if self._marks is None or (only_if_watched and not self.hub.subscriber_count):
            self._marks = marks
            return []
        old_tap, old_payout, old_change = self._marks
        new_tap, new_payout, new_change = marks
        events: list[Event] = []
        # After a long pause (server asleep, bulk import) only the newest rows matter to a page.
        cursor = max(old_tap, new_tap - MAX_BACKLOG)
        old_payout = max(old_payout, new_payout - MAX_BACKLOG)
        old_change = max(old_change, new_change - MAX_BACKLOG)
        while cursor < new_tap:
            taps = load_taps(self.engine, after_id=cursor)
            if not taps:
                break
            events.extend(Event("tap", t) for t in taps)
            cursor = int(taps[-1]["id"])
        payout_ids = set(range(old_payout + 1, new_payout + 1))
        if new_change > old_change:
            payout_ids |= self._changed_payouts(old_change, new_change)
        for chunk in _chunks(sorted(payout_ids), 500):
            events.extend(Event("payout", p) for p in load_payouts(self.engine, chunk))
        self._marks = (max(cursor, new_tap), new_payout, new_change)
        return events

    def _changed_payouts(self, after: int, upto: int) -> set[int]:
        change = cast(sa.Table, PayoutStateChange.__table__).c  # type: ignore[attr-defined]
        stmt = sa.select(change.payout_pk).where(
            change.id > after,
            change.id <= upto,
        )
        with self.engine.connect() as conn:
            return {int(r[0]) for r in conn.execute(stmt)}

    async def _poll_forever(self) -> None:
        while True:
            try:
                events = await asyncio.to_thread(self.poll_once, only_if_watched=True)
            except sa.exc.SQLAlchemyError as exc:
                log.warning("live-update poll failed (%s); retrying", type(exc).__name__)
                events = []
            for event in events:
                self.hub.publish(event)
            await asyncio.sleep(self.interval)

    # PostgreSQL ------------------------------------------------------------------------------

    def _conninfo(self) -> str:
        url = sa.engine.make_url(self.database_url).set(drivername="postgresql")
        return url.render_as_string(hide_password=False)

    async def _listen_forever(self) -> None:
        """LISTEN while this process has subscribers, and only then.

        Why: every tap is a NOTIFY, and every listening process receives and decodes each one
        (measured: a third of the server CPU per tap with two workers). With no open page the
        connection is closed; the first subscriber reopens it, and the SSE endpoint waits
        (``EventHub.ready``) until it listens before telling the browser it is connected.
        """
        import psycopg

        delay = 0.5
        while True:
            while not self.hub.subscriber_count:
                await asyncio.sleep(0.05)
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo(), autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.hub.listening = True
                    log.debug("listening for live updates on %s", CHANNEL)
                    delay = 0.5
                    while self.hub.subscriber_count:
                        async for note in conn.notifies(timeout=1.0):
                            event = decode(note.payload)
                            if event is not None and self.hub.subscriber_count:
                                await self.deliver(event)
                    # No await between the last count check and this: a subscriber attaching
                    # now waits in ready() for the next LISTEN.
                    self.hub.listening = False
            except asyncio.CancelledError:
                self.hub.listening = False
                raise
            except (psycopg.Error, OSError) as exc:
                self.hub.listening = False
                log.warning(
                    "live-update listener lost its connection (%s); reconnecting in %.1fs",
                    type(exc).__name__,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def deliver(self, event: Event) -> None:
        """Load the row behind an id-only event and publish the result."""
        try:
            events = await asyncio.to_thread(enrich, self.engine, event)
        except sa.exc.SQLAlchemyError as exc:
            log.warning(
                "could not load the row of a %s event (%s)", event.topic, type(exc).__name__
            )
            events = [event]
        for item in events:
            self.hub.publish(item)


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
