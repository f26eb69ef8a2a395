"""Live events: committed writes reach every open operator page within a second.

Writers call :func:`notify` inside their write transaction. On PostgreSQL that is a
``pg_notify`` which the server delivers only when the transaction commits, to every tracker
process that LISTENs - so several processes behind a load balancer all stay live. A process
LISTENs only while one of its pages is subscribed (receiving every tap's NOTIFY costs CPU).
SQLite has no such channel: a :class:`Watcher` polls three primary keys (taps, payouts, payout
state changes) every ~300 ms, which also catches rows a station process wrote straight into the
file. Card edits leave no new row to poll, so on SQLite :func:`notify` hands those to this
process's hubs after commit.

Each process has one :class:`EventHub` that fans events out to its SSE subscribers. Events carry
ids; the watcher loads the row once per process and publishes a render-ready dict, so a browser
gets everything it needs to draw the new table row.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import Engine, text

log = logging.getLogger(__name__)

CHANNEL = "tracker_events"
TOPICS = frozenset({"tap", "payout", "card", "station"})
#: Topics the SQLite watcher finds by polling; the rest are delivered in-process on commit.
POLLED_TOPICS = frozenset({"tap", "payout"})
#: Most rows per table one SQLite poll turns into events.
MAX_BACKLOG = 500
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


# --- writers -----------------------------------------------------------------------------------


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
            {"channel": CHANNEL, "body": _encode(topic, payload)},
        )
        return
    if topic in POLLED_TOPICS:
        return
    event = Event(topic, dict(payload))
    sa.event.listen(session, "after_commit", lambda _s: publish_local(event), once=True)


def _encode(topic: str, payload: dict[str, Any]) -> str:
    body = json.dumps({"topic": topic, "data": payload}, default=str, separators=(",", ":"))
    if len(body.encode()) > _MAX_PAYLOAD:
        small = {k: payload[k] for k in ("id", "uid") if k in payload}
        body = json.dumps({"topic": topic, "data": small}, default=str, separators=(",", ":"))
    return body


def _decode(raw: str) -> Event | None:
    try:
        message = json.loads(raw)
        topic, data = message["topic"], message.get("data") or {}
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring a malformed %s notification", CHANNEL)
        return None
    if topic not in TOPICS or not isinstance(data, dict):
        return None
    return Event(topic, data)


# --- fan-out -----------------------------------------------------------------------------------


class EventHub:
    """In-process fan-out: one bounded queue per subscriber; a slow subscriber is dropped.

    Dropping (rather than blocking) keeps one stalled browser from delaying everyone else; its
    EventSource reconnects by itself. ``publish`` may be called from any thread.
    """

    def __init__(self, *, queue_size: int = 256) -> None:
        self._queue_size = queue_size
        self._subscribers: set[asyncio.Queue[Event | None]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.published = 0
        self.closed = False
        #: Set by a PostgreSQL watcher: events reach this hub only while it LISTENs, which it
        #: does only while someone subscribes (see :meth:`ready`).
        self.needs_listener = False
        self.listening = False

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def publish(self, event: Event) -> None:
        """Deliver ``event`` to every subscriber (thread-safe)."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._publish(event)
        else:
            with contextlib.suppress(RuntimeError):  # loop shut down meanwhile
                loop.call_soon_threadsafe(self._publish, event)

    def _publish(self, event: Event) -> None:
        self.published += 1
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("dropping a live-update subscriber that stopped reading")
                self._subscribers.discard(queue)
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                queue.put_nowait(None)

    def attach(self) -> asyncio.Queue[Event | None]:
        """Register a subscriber on the running loop; pair with :meth:`detach`.

        The SSE endpoint attaches before it sends the response headers, so nothing committed
        after the browser sees the stream open can be missed.
        """
        self.loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=self._queue_size)
        if self.closed:  # shutting down: the stream ends at once
            queue.put_nowait(None)
            return queue
        self._subscribers.add(queue)
        return queue

    async def ready(self, *, timeout: float = 5.0) -> bool:
        """Wait until events committed from now on will reach the subscribers (on PostgreSQL:
        until the watcher LISTENs; at once on SQLite). False when that took over ``timeout``
        (database unreachable: the stream opens anyway and catches up once it listens)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.needs_listener and not self.listening:
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def detach(self, queue: asyncio.Queue[Event | None]) -> None:
        self._subscribers.discard(queue)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Event | None]]:
        """A queue of events for one subscriber; ``None`` in it means "you were dropped"."""
        queue = self.attach()
        try:
            yield queue
        finally:
            self.detach(queue)

    def close(self) -> None:
        """Tell every subscriber to finish, and refuse new ones (server shutdown)."""
        self.closed = True
        for queue in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
        self._subscribers.clear()


_LOCAL_WATCHERS: weakref.WeakSet[Watcher] = weakref.WeakSet()
_LOCAL_LOCK = threading.Lock()


def publish_local(event: Event) -> None:
    """Hand ``event`` to every running watcher of this process (SQLite, non-polled topics)."""
    with _LOCAL_LOCK:
        watchers = list(_LOCAL_WATCHERS)
    for watcher in watchers:
        watcher.deliver_threadsafe(event)


# --- rows to render-ready dicts ----------------------------------------------------------------


def _tables() -> tuple[sa.Table, sa.Table, sa.Table, sa.Table, sa.Table]:
    """The plain SQLAlchemy tables (typed columns, no ORM magic) behind the models."""
    from tracker.models import Card, Payout, PayoutStateChange, Station, Tap

    def table(model: Any) -> sa.Table:
        return cast(sa.Table, model.__table__)

    return table(Tap), table(Card), table(Station), table(Payout), table(PayoutStateChange)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _time(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def load_taps(engine: Engine, *, after_id: int, limit: int = 200) -> list[dict[str, Any]]:
    """Taps with id > ``after_id`` in id order, as the dashboard's live rows need them."""
    tap_t, card_t, station_t, _, _ = _tables()
    tap, card, station = tap_t.c, card_t.c, station_t.c
    stmt = (
        sa.select(
            tap.id,
            tap.counter,
            tap.outcome,
            tap.reason,
            tap.received_at,
            card.uid,
            card.alias,
            station.name,
        )
        .select_from(tap_t)
        .join(card_t, card.id == tap.card_pk)
        .join(station_t, station.id == tap.station_pk)
        .where(tap.id > after_id)
        .order_by(tap.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return [
        {
            "id": r.id,
            "card_uid": r.uid,
            "card_alias": r.alias,
            "station": r.name,
            "counter": r.counter,
            "outcome": str(r.outcome),
            "reason": r.reason,
            "received_at": _iso(r.received_at),
            "time": _time(r.received_at),
            "url": f"/cards/{r.uid}",
        }
        for r in rows
    ]


def load_payouts(engine: Engine, ids: list[int]) -> list[dict[str, Any]]:
    """Payouts by id, as the dashboard's live rows need them."""
    if not ids:
        return []
    _, card_t, station_t, payout_t, _ = _tables()
    card, station, payout = card_t.c, station_t.c, payout_t.c
    stmt = (
        sa.select(
            payout.id,
            payout.state,
            payout.amount_msat,
            payout.created,
            payout.updated,
            card.uid,
            card.alias,
            station.name,
        )
        .select_from(payout_t)
        .outerjoin(card_t, card.id == payout.card_pk)
        .outerjoin(station_t, station.id == payout.station_pk)
        .where(payout.id.in_(ids))
        .order_by(payout.id)
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return [
        {
            "id": r.id,
            "state": str(r.state),
            "amount_sats": int(r.amount_msat) // 1000,
            "card_uid": r.uid,
            "card_alias": r.alias,
            "station": r.name,
            "created": _iso(r.created),
            "time": _time(r.created),
            "url": f"/payouts/{r.id}",
        }
        for r in rows
    ]


def load_card(engine: Engine, uid: str) -> dict[str, Any] | None:
    card = _tables()[1].c
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(card.uid, card.alias, card.status, card.last_counter).where(card.uid == uid)
        ).first()
    if row is None:
        return None
    return {
        "uid": row.uid,
        "alias": row.alias,
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


# --- watchers ----------------------------------------------------------------------------------


class Watcher:
    """Feeds one hub from the database: LISTEN on PostgreSQL, polling on SQLite."""

    def __init__(
        self, hub: EventHub, engine: Engine, *, database_url: str, interval: float = 0.3
    ) -> None:
        self.hub = hub
        self.engine = engine
        self.database_url = database_url
        self.interval = interval
        self._marks: tuple[int, int, int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: set[asyncio.Task[None]] = set()
        # Before the task runs: a page subscribing right now must wait for the LISTEN.
        hub.needs_listener = engine.dialect.name == "postgresql"

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        with _LOCAL_LOCK:
            _LOCAL_WATCHERS.add(self)
        try:
            if self.engine.dialect.name == "postgresql":
                await self._listen_forever()
            else:
                await self._poll_forever()
        finally:
            with _LOCAL_LOCK:
                _LOCAL_WATCHERS.discard(self)

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
        change = _tables()[4].c
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
                            event = _decode(note.payload)
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


# --- wiring into the app -----------------------------------------------------------------------


class LiveUpdates:
    """The hub and its watcher task for one app, started lazily on the running loop."""

    def __init__(self, app: Any, *, interval: float = 0.3) -> None:
        self.app = app
        self.interval = interval
        self.hub = EventHub()
        self._task: asyncio.Task[None] | None = None

    def ensure_started(self) -> EventHub:
        loop = asyncio.get_running_loop()
        if self._task is not None and not self._task.done() and self.hub.loop is loop:
            return self.hub
        if self._task is not None and not self._task.done():
            self._task.cancel()  # a previous loop (test clients) - start afresh on this one
        self.hub.loop = loop
        self.hub.closed = False
        state = self.app.state
        watcher = Watcher(
            self.hub,
            state.engine,
            database_url=state.settings.database_url,
            interval=self.interval,
        )
        self._task = loop.create_task(_supervise(watcher.run), name="tracker-live-updates")
        return self.hub

    async def stop(self) -> None:
        self.hub.close()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _supervise(run: Callable[[], Any]) -> None:
    try:
        await run()
    except asyncio.CancelledError:
        raise
    except Exception:  # a bug must not silently end live updates without a trace
        log.exception("live-update watcher crashed; pages will stop updating until restart")
        raise


def live_updates(app: Any) -> LiveUpdates:
    """The app's :class:`LiveUpdates`, created on first use."""
    live = getattr(app.state, "live_updates", None)
    if live is None:
        live = LiveUpdates(app)
        app.state.live_updates = live
    return live  # type: ignore[no-any-return]


def install(app: Any) -> None:
    """Start the hub with the app and stop it on shutdown (``create_app`` calls this).

    Wraps the app's existing lifespan so E's own startup/shutdown work keeps running.
    """
    previous = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(inner_app: Any) -> AsyncIterator[Any]:
        async with previous(inner_app) as state:
            live = live_updates(app)
            hub = live.ensure_started()
            restore = _end_streams_on_shutdown_signal(hub)
            try:
                yield state
            finally:
                restore()
                await live.stop()

    app.router.lifespan_context = lifespan


def _end_streams_on_shutdown_signal(hub: EventHub) -> Callable[[], None]:
    """Close the SSE streams as soon as SIGINT/SIGTERM arrives.

    Why: uvicorn waits for open responses to finish before it runs the lifespan shutdown, and
    an SSE stream never finishes by itself - one open dashboard would stop the tracker from
    exiting. We chain onto the server's own handler (only possible in the main thread).
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    installed: dict[int, Any] = {}

    def chain(previous: Callable[[int, Any], Any]) -> Callable[[int, Any], None]:
        def handler(signum: int, frame: Any) -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(hub.close)
            previous(signum, frame)

        return handler

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(sig)
        if callable(previous):
            ours = chain(previous)
            signal.signal(sig, ours)
            installed[sig] = (previous, ours)

    def restore() -> None:
        for sig, (previous, ours) in installed.items():
            if signal.getsignal(sig) is ours:
                signal.signal(sig, previous)

    return restore
