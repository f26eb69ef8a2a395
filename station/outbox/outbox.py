"""The station's durable spool and replay memory, one SQLite file.

Why an outbox: a tap is acknowledged to the customer only after its record is durably on the
station's disk, so a crash, a SIGKILL or a tracker outage cannot lose it. Why exactly once:
every record carries an idempotency key ("<UID>:<counter>" for accepted taps,
"<station>:<uuid4>" for refused ones, "claim:<uuid4>" for each state of a claim), chosen when
the record is spooled and stored with it, so re-sending after a crash between "sent" and
"marked as sent" makes the tracker answer "already stored" instead of storing it twice.

Records have a kind (``tap``, ``claim``: :mod:`station.uplink.records`). The file also holds
the replay memory: the highest accepted counter per card, updated in the same transaction that
spools an accepted tap, so the station keeps refusing replays while it is offline. When the
tracker turns an accepted tap down (a replay it knew about, a race another station won, a card
blocked meanwhile), :meth:`Outbox.settle` records that refusal and raises the memory itself, in
the same transaction as the answer.

Schema versions (``PRAGMA user_version``): 0/absent = v1 (taps only, no ``kind`` column, as
written before issue 7), 2 = records with a kind. A v1 file is migrated in place on open.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Final

from station.outbox import opening
from station.outbox.opening import OutboxUnusable
from station.uplink.base import BLOCKED, CONFLICT, PENDING, REJECTED, Delivery
from station.uplink.records import TAP, Record, TapRecord, from_stored, stored_fields

SCHEMA_VERSION: Final = 2

# Accepted/refused and the refusal reasons the outbox itself writes (the tap package owns the
# full list; these two strings are the tracker's and must match it).
_ACCEPTED: Final = "accepted"
_REFUSED: Final = "refused"
_REPLAY: Final = "counter_not_increasing"
_CARD_BLOCKED: Final = "card_blocked"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL DEFAULT 'tap',
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


class LocalReplay(Exception):
    """The outbox already holds an accepted tap of this card with this counter or a higher one."""

    def __init__(self, last_counter: int) -> None:
        self.last_counter = last_counter
        super().__init__(f"counter not above the last accepted one ({last_counter})")


class OutboxWriteError(Exception):
    """The outbox file cannot be written right now (disk full, I/O error). Nothing was
    changed; what was pending still is. ``disk_full`` tells the two apart."""

    def __init__(self, path: Path, exc: sqlite3.Error) -> None:
        code = int(getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
        self.disk_full = code == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
        self.path = path
        if self.disk_full:
            what = "disk full; free space there (records wait and go out once it can be written)"
        else:
            what = f"cannot write ({exc}); check the disk and the file's permissions"
        super().__init__(f"outbox {path}: {what}")


class OutboxVersionError(OutboxUnusable):
    """The outbox file was written by a newer station: upgrade this one (nothing was changed)."""


@dataclass(frozen=True)
class OutboxEntry:
    seq: int
    record: Record
    state: str
    attempts: int


class Outbox:
    """The spool and the replay memory.

    ``synchronous=FULL`` in WAL mode fsyncs the WAL on every commit, so :meth:`append` returns
    only once the record would survive a power cut. One connection shared by the reader threads
    and the forwarder, guarded by a lock (appends are a few hundred microseconds).
    ``station_name`` names the refusals the outbox writes itself.
    """

    def __init__(
        self, path: Path | str, *, station_name: str = "station", fresh: bool = False
    ) -> None:
        """Open (or create) the outbox at ``path``. A file that is not ours (empty, another
        database, corrupt) raises :class:`~station.outbox.opening.OutboxUnusable`; with
        ``fresh`` it is set aside and a new outbox begins (:mod:`station.outbox.opening`)."""
        self.path = Path(path)
        self.station_name = station_name
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._new = threading.Event()
        self._db = opening.connect(self.path, fresh=fresh)
        try:
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise OutboxUnusable(
                f"outbox {self.path} cannot be used ({exc}); {opening.FRESH_HINT}"
            ) from None

    def _migrate(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            self._db.close()
            raise OutboxVersionError(
                f"{self.path}: outbox schema v{version} is newer than this station's "
                f"(v{SCHEMA_VERSION}); upgrade the station"
            )
        if version == SCHEMA_VERSION:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
            if columns and "kind" not in columns:  # v1: every record is a tap
                self._db.execute("ALTER TABLE outbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'tap'")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writing ----------------------------------------------------------------------------------

    def append(self, record: Record) -> int:
        """Spool a record durably; for an accepted tap, also advance the replay memory.

        Raises :class:`LocalReplay` (and stores nothing) when an accepted tap's counter is not
        above the one remembered for the card: the check and the update are one transaction,
        so two readers of one station cannot both accept the same counter.
        """
        with self._lock, self._writing():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seq = self._insert(record)
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        self._new.set()
        return seq

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """SQLite's write errors as :class:`OutboxWriteError` (saying "disk full" when so)."""
        try:
            yield
        except sqlite3.Error as exc:
            raise OutboxWriteError(self.path, exc) from exc

    def _rollback(self) -> None:
        """Roll back if a transaction is still open: on a full disk or an I/O error SQLite has
        already rolled it back, and a second ROLLBACK would hide the real error behind "cannot
        rollback - no transaction is active"."""
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    def _insert(self, record: Record) -> int:
        """Inside a transaction, with the lock held."""
        if isinstance(record, TapRecord) and record.outcome == _ACCEPTED and record.verified:
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
        body = json.dumps(stored_fields(record), separators=(",", ":"))
        cur = self._db.execute(
            "INSERT INTO outbox(kind, idempotency_key, body, created_at) VALUES (?, ?, ?, ?)",
            (record.kind, record.idempotency_key, body, time.time()),
        )
        return int(cur.lastrowid or 0)

    def remember_counter(self, uid: str, counter: int) -> None:
        """Raise the replay memory to ``counter`` (e.g. the tracker told us a higher one)."""
        with self._lock, self._writing():
            self._remember(uid, counter)

    def _remember(self, uid: str, counter: int) -> None:
        self._db.execute(
            "INSERT INTO counters(uid, last_counter) VALUES (?, ?) ON CONFLICT(uid) DO UPDATE "
            "SET last_counter = MAX(last_counter, excluded.last_counter)",
            (uid, counter),
        )

    def note_attempt(self, seq: int) -> None:
        self._lazy("UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?", (seq,))

    def note_attempts(self, seqs: Sequence[int]) -> None:
        """:meth:`note_attempt` for a batch, in one write."""
        marks = ",".join("?" * len(seqs))
        self._lazy(f"UPDATE outbox SET attempts = attempts + 1 WHERE seq IN ({marks})",
                   tuple(seqs))

    def settle_many(self, answers: Sequence[tuple[int, Delivery]]) -> list[int]:
        """:meth:`settle` for a batch: plain answers in one write, turn-downs of accepted taps
        one by one (each spools its refusal); the seqs of those refusals."""
        plain = [(seq, d) for seq, d in answers if d.state not in (CONFLICT, BLOCKED)]
        if plain:
            now = time.time()
            rows = [(d.state, now, json.dumps(asdict(d), separators=(",", ":")), seq)
                    for seq, d in plain]
            with self._lock, self._writing():
                self._db.execute("PRAGMA synchronous=NORMAL")
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                    try:
                        self._db.executemany(
                            "UPDATE outbox SET state = ?, settled_at = ?, answer = ? "
                            "WHERE seq = ?", rows)
                        self._db.execute("COMMIT")
                    except BaseException:
                        self._rollback()
                        raise
                finally:
                    self._db.execute("PRAGMA synchronous=FULL")
        refusals = []
        for seq, delivery in answers:
            if delivery.state in (CONFLICT, BLOCKED):
                refused = self.settle(seq, delivery)
                if refused is not None:
                    refusals.append(refused)
        return refusals

    def settle(self, seq: int, delivery: Delivery) -> int | None:
        """Write the tracker's final answer to record ``seq``; it is never sent again.

        When the answer turns an accepted tap down (409 conflict, 403 blocked), the same
        transaction spools a refused record of that tap, so the operator sees the refusal too,
        and raises the replay memory to the tracker's counter; the refusal's seq is returned.

        A plain answer is committed without an fsync of its own: if a crash loses it, the
        record is simply sent again and the tracker answers "already stored".
        """
        answer = json.dumps(asdict(delivery), separators=(",", ":"))
        settle = "UPDATE outbox SET state = ?, settled_at = ?, answer = ? WHERE seq = ?"
        params = (delivery.state, time.time(), answer, seq)
        if delivery.state not in (CONFLICT, BLOCKED):
            self._lazy(settle, params)
            return None
        with self._lock, self._writing():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(settle, params)
                row = self._db.execute(
                    "SELECT seq, kind, body, state, attempts FROM outbox WHERE seq = ?", (seq,)
                ).fetchone()
                refusal = None if row is None else self._refusal_of(_entry(row).record, delivery)
                refused_seq = None
                if refusal is not None:
                    if delivery.last_counter is not None:
                        self._remember(refusal.card_uid, int(delivery.last_counter))
                    refused_seq = self._insert(refusal)
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        if refused_seq is not None:
            self._new.set()
        return refused_seq

    def _refusal_of(self, record: Record, delivery: Delivery) -> TapRecord | None:
        if not isinstance(record, TapRecord) or record.outcome != _ACCEPTED:
            return None
        if delivery.state not in (CONFLICT, BLOCKED):
            return None
        return replace(
            record,
            idempotency_key=f"{self.station_name}:{uuid.uuid4()}",
            outcome=_REFUSED,
            reason=_REPLAY if delivery.state == CONFLICT else _CARD_BLOCKED,
        )

    def _lazy(self, sql: str, params: tuple[Any, ...]) -> None:
        """One write whose loss in a crash is harmless: committed without waiting for fsync."""
        with self._lock, self._writing():
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._db.execute(sql, params)
            finally:
                self._db.execute("PRAGMA synchronous=FULL")

    def prune(self, older_than: float = 30 * 86400.0) -> int:
        """Forget settled records older than ``older_than`` seconds (the tracker has them).

        Pending records are never pruned, nor the counter memory.
        """
        cutoff = time.time() - older_than
        with self._lock, self._writing():
            cur = self._db.execute(
                "DELETE FROM outbox WHERE state != ? AND settled_at IS NOT NULL AND settled_at < ?",
                (PENDING, cutoff),
            )
        return int(cur.rowcount or 0)

    # -- reading ----------------------------------------------------------------------------------

    def last_counter(self, uid: str) -> int | None:
        with self._lock:
            row = self._db.execute(
                "SELECT last_counter FROM counters WHERE uid = ?", (uid,)
            ).fetchone()
        return None if row is None else int(row[0])

    def next_pending(self) -> OutboxEntry | None:
        with self._lock:
            row = self._db.execute(
                "SELECT seq, kind, body, state, attempts FROM outbox WHERE state = ? "
                "ORDER BY seq LIMIT 1",
                (PENDING,),
            ).fetchone()
        return None if row is None else _entry(row)

    def pending_run(self, kind: str, limit: int) -> list[OutboxEntry]:
        """The oldest pending records while they are of ``kind`` (at most ``limit``): what can
        go out in one batch without changing the order across kinds."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, kind, body, state, attempts FROM outbox WHERE state = ? "
                "ORDER BY seq LIMIT ?",
                (PENDING, limit),
            ).fetchall()
        run = []
        for row in rows:
            if str(row[1] or TAP) != kind:
                break
            run.append(_entry(row))
        return run

    def entry(self, seq: int) -> OutboxEntry | None:
        with self._lock:
            row = self._db.execute(
                "SELECT seq, kind, body, state, attempts FROM outbox WHERE seq = ?", (seq,)
            ).fetchone()
        return None if row is None else _entry(row)

    def entries(self, kind: str | None = None, limit: int = 10_000) -> list[OutboxEntry]:
        """Records in spool order (all, or one ``kind``): for operators and tests."""
        sql = "SELECT seq, kind, body, state, attempts FROM outbox"
        params: tuple[Any, ...] = ()
        if kind is not None:
            sql += " WHERE kind = ?"
            params = (kind,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY seq LIMIT ?", (*params, limit)).fetchall()
        return [_entry(row) for row in rows]

    def delivery(self, seq: int) -> Delivery | None:
        """The settled answer of a record, or ``None`` while it is pending."""
        with self._lock:
            row = self._db.execute(
                "SELECT state, answer FROM outbox WHERE seq = ?", (seq,)
            ).fetchone()
        if row is None or row[0] == PENDING or row[1] is None:
            return None
        return Delivery(**json.loads(row[1]))

    def counts(self) -> dict[str, int]:
        """Records per state (``pending``, ``delivered``, ``conflict``, ``blocked``,
        ``rejected``) — a state with no record is absent — and ``dead``: the rejected ones,
        which are never sent again (present when there are any)."""
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall()
        counts = {str(state): int(n) for state, n in rows}
        if counts.get(REJECTED):
            counts["dead"] = counts[REJECTED]
        return counts

    def waiting(self) -> tuple[int, int]:
        """``(pending, dead)`` from the state index: cheap however many settled records the
        file holds (:meth:`counts` scans them all), so a heartbeat or a scrape never holds
        the outbox lock long enough to delay a tap."""
        with self._lock:
            rows = self._db.execute(
                "SELECT state, COUNT(*) FROM outbox WHERE state IN (?, ?) GROUP BY state",
                (PENDING, REJECTED),
            ).fetchall()
        found = {str(state): int(n) for state, n in rows}
        return found.get(PENDING, 0), found.get(REJECTED, 0)

    def pending_count(self) -> int:
        return self.counts().get(PENDING, 0)

    # -- waking the forwarder ---------------------------------------------------------------------

    def wait_for_new(self, timeout: float) -> None:
        """Block until a record is appended (or :meth:`wake`), at most ``timeout`` seconds."""
        self._new.wait(timeout)
        self._new.clear()

    def wake(self) -> None:
        """Cut a :meth:`wait_for_new` short (a flush, a stop)."""
        self._new.set()


def _entry(row: tuple[Any, ...]) -> OutboxEntry:
    kind = str(row[1] or TAP)
    return OutboxEntry(int(row[0]), from_stored(kind, json.loads(row[2])), row[3], int(row[4]))
