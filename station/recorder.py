"""Getting taps into the tracker without losing or duplicating one.

The path of a tap record::

    pipeline decides ──► Outbox.append (SQLite WAL, synchronous=FULL: on disk before we return)
                     ──► reader feedback (green/red) ──► Forwarder thread ──► Recorder.send
                                                                   (DirectRecorder | HttpRecorder)

Why an outbox: the tap is acknowledged to the customer only after its record is durably on the
station's disk, so a crash, a SIGKILL or a tracker outage cannot lose it. Why exactly once: every
record carries an idempotency key ("<UID>:<counter>" for accepted taps, "<station>:<uuid4>" for
refused ones, chosen when the record is spooled and stored with it), so re-sending after a crash
between "sent" and "marked as sent" makes the tracker answer "already stored" instead of storing
it twice. The forwarder sends in spool order, one at a time, and backs off while the tracker is
unreachable. A final answer (stored, already stored, counter conflict, card blocked, rejected
body) is written back to the outbox and never retried.

The outbox file also holds the station's replay memory: the highest accepted counter per card,
updated in the same transaction that spools an accepted tap, so the station keeps refusing
replays while it is offline.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("station.recorder")

PENDING = "pending"
DELIVERED = "delivered"  # 201 or 200 (already stored by us)
CONFLICT = "conflict"  # 409: counter not increasing (replay, or another station won a race)
BLOCKED = "blocked"  # 403: card blocked
REJECTED = "rejected"  # 422: the tracker will never accept this body
FINAL_STATES = (DELIVERED, CONFLICT, BLOCKED, REJECTED)


class RecorderUnavailable(Exception):
    """The tracker cannot be reached right now (network, 5xx, database locked). Retry later."""


class LocalReplay(Exception):
    """The outbox already holds an accepted tap of this card with this counter or a higher one."""

    def __init__(self, last_counter: int) -> None:
        self.last_counter = last_counter
        super().__init__(f"counter not above the last accepted one ({last_counter})")


@dataclass(frozen=True)
class TapRecord:
    """One tap as the tracker's ingest API wants it (``POST /api/v1/taps`` body)."""

    idempotency_key: str
    card_uid: str
    card_id: str | None
    counter: int
    station_time: str
    outcome: str
    reason: str | None
    issuer_host: str | None

    def to_body(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Delivery:
    """The tracker's final answer about one record."""

    state: str
    created: bool = False
    last_counter: int | None = None
    detail: str | None = None


@dataclass(frozen=True)
class CardStatus:
    """What the tracker knows about a card: ``active|blocked|wiped|unknown`` and its counter."""

    status: str
    last_counter: int | None


@dataclass(frozen=True)
class OutboxEntry:
    seq: int
    record: TapRecord
    state: str
    attempts: int


class Recorder(Protocol):
    """A way into the tracker. ``send`` is idempotent per ``record.idempotency_key``."""

    def send(self, record: TapRecord) -> Delivery:
        """Store the record; raise :class:`RecorderUnavailable` for anything worth retrying."""
        ...

    def card_status(self, uid: str) -> CardStatus:
        """Current status of a card; raise :class:`RecorderUnavailable` when unreachable."""
        ...

    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    settled_at REAL,
    answer TEXT
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(state, seq);
CREATE TABLE IF NOT EXISTS counters (
    uid TEXT PRIMARY KEY,
    last_counter INTEGER NOT NULL
);
"""


class Outbox:
    """The station's durable spool and replay memory, one SQLite file.

    ``synchronous=FULL`` in WAL mode fsyncs the WAL on every commit, so :meth:`append` returns
    only once the record would survive a power cut. One connection shared by the reader threads
    and the forwarder, guarded by a lock (appends are a few hundred microseconds).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def append(self, record: TapRecord) -> int:
        """Spool a record durably; for an accepted tap, also advance the replay memory.

        Raises :class:`LocalReplay` (and stores nothing) when an accepted tap's counter is not
        above the one remembered for the card: the check and the update are one transaction,
        so two readers of one station cannot both accept the same counter.
        """
        body = json.dumps(record.to_body(), separators=(",", ":"))
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if record.outcome == "accepted":
                    row = self._db.execute(
                        "SELECT last_counter FROM counters WHERE uid = ?", (record.card_uid,)
                    ).fetchone()
                    if row is not None and row[0] >= record.counter:
                        raise LocalReplay(int(row[0]))
                    self._db.execute(
                        "INSERT INTO counters(uid, last_counter) VALUES (?, ?) "
                        "ON CONFLICT(uid) DO UPDATE SET last_counter = excluded.last_counter",
                        (record.card_uid, record.counter),
                    )
                cur = self._db.execute(
                    "INSERT INTO outbox(idempotency_key, body, created_at) VALUES (?, ?, ?)",
                    (record.idempotency_key, body, time.time()),
                )
                seq = int(cur.lastrowid or 0)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return seq

    def last_counter(self, uid: str) -> int | None:
        with self._lock:
            row = self._db.execute(
                "SELECT last_counter FROM counters WHERE uid = ?", (uid,)
            ).fetchone()
        return None if row is None else int(row[0])

    def remember_counter(self, uid: str, counter: int) -> None:
        """Raise the replay memory to ``counter`` (e.g. the tracker told us a higher one)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO counters(uid, last_counter) VALUES (?, ?) ON CONFLICT(uid) DO UPDATE "
                "SET last_counter = MAX(last_counter, excluded.last_counter)",
                (uid, counter),
            )

    def next_pending(self) -> OutboxEntry | None:
        with self._lock:
            row = self._db.execute(
                "SELECT seq, body, state, attempts FROM outbox WHERE state = ? "
                "ORDER BY seq LIMIT 1",
                (PENDING,),
            ).fetchone()
        if row is None:
            return None
        return OutboxEntry(int(row[0]), TapRecord(**json.loads(row[1])), row[2], int(row[3]))

    def note_attempt(self, seq: int) -> None:
        self._lazy("UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?", (seq,))

    def settle(self, seq: int, delivery: Delivery) -> None:
        """Write the tracker's final answer; the record is never sent again.

        No fsync of its own (``synchronous=NORMAL`` for this one statement's commit): if a crash
        loses it, the record is simply sent again and the tracker answers "already stored".
        """
        answer = json.dumps(asdict(delivery), separators=(",", ":"))
        self._lazy(
            "UPDATE outbox SET state = ?, settled_at = ?, answer = ? WHERE seq = ?",
            (delivery.state, time.time(), answer, seq),
        )

    def _lazy(self, sql: str, params: tuple[Any, ...]) -> None:
        """One write whose loss in a crash is harmless: committed without waiting for fsync."""
        with self._lock:
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._db.execute(sql, params)
            finally:
                self._db.execute("PRAGMA synchronous=FULL")

    def entry(self, seq: int) -> OutboxEntry | None:
        with self._lock:
            row = self._db.execute(
                "SELECT seq, body, state, attempts FROM outbox WHERE seq = ?", (seq,)
            ).fetchone()
        if row is None:
            return None
        return OutboxEntry(int(row[0]), TapRecord(**json.loads(row[1])), row[2], int(row[3]))

    def delivery(self, seq: int) -> Delivery | None:
        """The settled answer of a record, or ``None`` while it is pending."""
        with self._lock:
            row = self._db.execute(
                "SELECT state, answer FROM outbox WHERE seq = ?", (seq,)
            ).fetchone()
        if row is None or row[0] == PENDING or row[1] is None:
            return None
        return Delivery(**json.loads(row[1]))

    def prune(self, older_than: float = 30 * 86400.0) -> int:
        """Forget settled records older than ``older_than`` seconds (the tracker has them).

        Pending records are never pruned, nor the counter memory.
        """
        cutoff = time.time() - older_than
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM outbox WHERE state != ? AND settled_at IS NOT NULL AND settled_at < ?",
                (PENDING, cutoff),
            )
        return int(cur.rowcount or 0)

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall()
        return {str(state): int(n) for state, n in rows}

    def pending_count(self) -> int:
        return self.counts().get(PENDING, 0)


class Forwarder:
    """One thread that drains the outbox into a :class:`Recorder`, oldest record first.

    While the recorder is unavailable it retries the same record with exponential backoff
    (``backoff_initial`` doubling up to ``backoff_max``); :meth:`kick` (called after every
    append) cuts a wait short so a fresh tap goes out at once. Callers that want the tracker's
    verdict for a record they just spooled use :meth:`wait_for`.
    """

    def __init__(
        self,
        outbox: Outbox,
        recorder: Recorder,
        *,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
        on_settled: Callable[[OutboxEntry, Delivery], None] | None = None,
    ) -> None:
        self.outbox = outbox
        self.recorder = recorder
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.on_settled = on_settled
        self._cond = threading.Condition()
        self._kicked = False
        self._stopping = False
        self._online = True
        self._thread: threading.Thread | None = None

    @property
    def online(self) -> bool:
        """False while the last attempt failed with :class:`RecorderUnavailable`."""
        return self._online

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="outbox-forwarder", daemon=True)
        self._thread.start()

    def kick(self) -> None:
        with self._cond:
            self._kicked = True
            self._cond.notify_all()

    def wait_for(self, seq: int, timeout: float) -> Delivery | None:
        """Block until record ``seq`` is settled (its :class:`Delivery`) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = self.outbox.delivery(seq)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or self._stopping or not self._online:
                    return None  # offline: the caller decides on local memory
                self._cond.wait(min(left, 0.25))

    def flush(self, timeout: float) -> bool:
        """Wait until nothing is pending (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        self.kick()
        while self.outbox.pending_count():
            if time.monotonic() >= deadline:
                return False
            with self._cond:
                self._cond.wait(0.05)
        return True

    def stop(self, flush_timeout: float = 0.0) -> int:
        """Try to flush for ``flush_timeout`` seconds, stop the thread; return what is left."""
        if flush_timeout > 0 and self._thread is not None:
            self.flush(flush_timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return self.outbox.pending_count()

    def _sleep(self, seconds: float) -> None:
        with self._cond:
            if not self._kicked and not self._stopping:
                self._cond.wait(seconds)
            self._kicked = False

    def _run(self) -> None:
        backoff = self.backoff_initial
        while True:
            with self._cond:
                if self._stopping:
                    return
            entry = self.outbox.next_pending()
            if entry is None:
                self._sleep(1.0)
                continue
            self.outbox.note_attempt(entry.seq)
            try:
                delivery = self.recorder.send(entry.record)
            except RecorderUnavailable as exc:
                if self._online:
                    log.warning("tracker unreachable, spooling taps locally: %s", exc)
                self._online = False
                with self._cond:
                    self._cond.notify_all()
                self._sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max)
                continue
            except Exception:  # a bug in a recorder must not kill the forwarder
                log.exception("recorder failed unexpectedly; will retry")
                self._online = False
                self._sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max)
                continue
            if not self._online:
                log.info("tracker reachable again; forwarding %d spooled taps",
                         self.outbox.pending_count())
            self._online = True
            backoff = self.backoff_initial
            self.outbox.settle(entry.seq, delivery)
            if delivery.state in (CONFLICT, BLOCKED, REJECTED):
                log.warning(
                    "tracker refused spooled tap %s: %s",
                    _short_key(entry.record.idempotency_key),
                    delivery.detail or delivery.state,
                )
            if self.on_settled is not None:
                try:
                    self.on_settled(entry, delivery)
                except Exception:
                    log.exception("on_settled hook failed")
            with self._cond:
                self._cond.notify_all()


def _short_key(key: str) -> str:
    uid, _, rest = key.partition(":")
    return f"{uid[:4]}…{uid[-2:]}:{rest}" if len(uid) > 8 else key


class HttpRecorder:
    """Posts taps to a remote tracker's ingest API with the station token.

    The ``httpx.Client`` is handed in (base URL, timeouts, transport), so tests can pass one
    bound to a local server or an ``httpx.MockTransport``.
    """

    def __init__(self, client: Any, token: str) -> None:
        self._client = client
        self._headers = {"Authorization": f"Bearer {token}"}

    def close(self) -> None:
        self._client.close()

    def _request(self, method: str, url: str, **kw: Any) -> Any:
        import httpx

        try:
            return self._client.request(method, url, headers=self._headers, **kw)
        except httpx.HTTPError as exc:
            raise RecorderUnavailable(f"{type(exc).__name__} talking to the tracker") from None

    def send(self, record: TapRecord) -> Delivery:
        resp = self._request("POST", "/api/v1/taps", json=record.to_body())
        code = resp.status_code
        if code in (200, 201):
            created = bool(_json(resp).get("created", code == 201))
            return Delivery(DELIVERED, created=created)
        detail = _json(resp).get("detail")
        reason = detail.get("reason") if isinstance(detail, dict) else None
        if code == 409:
            last = detail.get("last_counter") if isinstance(detail, dict) else None
            return Delivery(CONFLICT, last_counter=last, detail=reason or "counter_not_increasing")
        if code == 403:
            return Delivery(BLOCKED, detail=reason or "card_blocked")
        if code == 401:
            # Not final: dropping the record would lose a tap. Keep it and shout.
            raise RecorderUnavailable(
                "the tracker refused the station token (401); set STATION_TRACKER_TOKEN to a "
                "token from `tracker stations add NAME`"
            )
        if code == 422:
            return Delivery(REJECTED, detail=_short(json.dumps(detail)))
        raise RecorderUnavailable(f"tracker answered HTTP {code}")

    def card_status(self, uid: str) -> CardStatus:
        resp = self._request("GET", f"/api/v1/cards/{uid}/status")
        if resp.status_code == 404:
            return CardStatus("unknown", None)
        if resp.status_code != 200:
            raise RecorderUnavailable(f"tracker answered HTTP {resp.status_code} for card status")
        data = _json(resp)
        last = data.get("last_counter")
        return CardStatus(str(data.get("status", "unknown")), None if last is None else int(last))


def _json(resp: Any) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class DirectRecorder:
    """Writes taps straight into the tracker's database (station and tracker on one machine).

    Uses the tracker's own service function, so the counter compare-and-set and the blocked-card
    rule are exactly the ones the HTTP API applies.
    """

    def __init__(self, database_url: str, station_name: str) -> None:
        from tracker import db as tracker_db

        self.station_name = station_name
        self._engine = tracker_db.make_engine(database_url)
        self._session_factory = tracker_db.make_sessionmaker(self._engine)

    def close(self) -> None:
        self._engine.dispose()

    def send(self, record: TapRecord) -> Delivery:
        from sqlalchemy.exc import OperationalError

        from tracker.models import TapCreate
        from tracker.services import taps

        tap = TapCreate(**record.to_body())
        try:
            with self._session_factory() as session:
                _public, created = taps.record_tap(
                    session, station_name=self.station_name, tap=tap
                )
                return Delivery(DELIVERED, created=bool(created))
        except taps.CounterConflict as exc:
            last = getattr(exc, "last_counter", None)
            return Delivery(CONFLICT, last_counter=last, detail="counter_not_increasing")
        except taps.CardBlocked:
            return Delivery(BLOCKED, detail="card_blocked")
        except OperationalError as exc:
            raise RecorderUnavailable(f"tracker database unavailable: {exc.orig!s}"[:200]) from None

    def card_status(self, uid: str) -> CardStatus:
        from sqlalchemy import text
        from sqlalchemy.exc import OperationalError

        try:
            with self._engine.connect() as conn:
                row = conn.execute(
                    text("SELECT status, last_counter FROM card WHERE uid = :uid"),
                    {"uid": uid.upper()},
                ).fetchone()
        except OperationalError as exc:
            raise RecorderUnavailable(f"tracker database unavailable: {exc.orig!s}"[:200]) from None
        if row is None:
            return CardStatus("unknown", None)
        status = getattr(row[0], "value", row[0])
        return CardStatus(str(status), None if row[1] is None else int(row[1]))


class NullRecorder:
    """No tracker configured: records stay in the outbox (``station run`` warns about it)."""

    def send(self, record: TapRecord) -> Delivery:
        raise RecorderUnavailable("no tracker configured")

    def card_status(self, uid: str) -> CardStatus:
        raise RecorderUnavailable("no tracker configured")

    def close(self) -> None:
        pass
