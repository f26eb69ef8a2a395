"""The station's durable memory of its charges: what was claimed, with which invoice.

Why it exists: the rule "the callback is never sent twice for one tap" has to survive a crash.
A charge is written here (``synchronous=FULL``: on disk before the call returns) *before* its
callback goes out, and the table's ``UNIQUE(tap_key)`` makes a second claim for one tap
impossible. After a restart every charge that was sending, claimed, pending or unknown is handed
to the invoice watcher, which settles it by asking the merchant's own invoice source — never by
calling the issuer again.

What is not here: the PIN, the preimage, ``k1`` (only its SHA-256), the card's p/c.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    id TEXT PRIMARY KEY,
    tap_key TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    amount_msat INTEGER NOT NULL,
    memo TEXT NOT NULL DEFAULT '',
    issuer_host TEXT,
    bolt11 TEXT,
    payment_hash TEXT,
    invoice_id TEXT,
    invoice_expires_at REAL,
    k1_hash TEXT,
    reason TEXT,
    uid TEXT,
    counter INTEGER,
    card_id TEXT,
    verified INTEGER,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS charges_open ON charges(state);
"""

OPEN_STATES = ("sending", "claimed", "pending", "unknown")


class DuplicateClaim(Exception):
    """This tap already has a claim: its callback must not be sent again."""


@dataclass(frozen=True)
class JournalEntry:
    id: str
    tap_key: str
    state: str
    amount_msat: int
    memo: str
    issuer_host: str | None
    bolt11: str | None
    payment_hash: str | None
    invoice_id: str | None
    invoice_expires_at: float | None
    k1_hash: str | None
    reason: str | None
    uid: str | None
    counter: int | None
    card_id: str | None
    verified: bool | None
    created_at: float


_COLUMNS = (
    "id, tap_key, state, amount_msat, memo, issuer_host, bolt11, payment_hash, invoice_id, "
    "invoice_expires_at, k1_hash, reason, uid, counter, card_id, verified, created_at"
)


def _entry(row: tuple[object, ...]) -> JournalEntry:
    values = list(row)
    values[15] = None if values[15] is None else bool(values[15])
    return JournalEntry(*values)  # type: ignore[arg-type]


class ChargeJournal:
    """One SQLite file (mode 0600), one connection shared by the reader threads and the
    watcher under a lock. Writes are a few hundred microseconds with fsync."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
                os.close(fd)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def begin(self, entry: JournalEntry) -> None:
        """Record a charge about to send its callback. Raises :class:`DuplicateClaim` when the
        tap already has one (the caller then must not send anything)."""
        now = time.time()
        with self._lock:
            try:
                self._db.execute(
                    f"INSERT INTO charges({_COLUMNS}, updated_at) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        entry.id, entry.tap_key, entry.state, entry.amount_msat, entry.memo,
                        entry.issuer_host, entry.bolt11, entry.payment_hash, entry.invoice_id,
                        entry.invoice_expires_at, entry.k1_hash, entry.reason, entry.uid,
                        entry.counter, entry.card_id,
                        None if entry.verified is None else int(entry.verified),
                        entry.created_at, now,
                    ),
                )
            except sqlite3.IntegrityError:
                raise DuplicateClaim(entry.tap_key) from None

    def update(self, charge_id: str, state: str, reason: str | None = None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE charges SET state = ?, reason = COALESCE(?, reason), updated_at = ? "
                "WHERE id = ?",
                (state, reason, time.time(), charge_id),
            )

    def get(self, charge_id: str) -> JournalEntry | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM charges WHERE id = ?", (charge_id,)
            ).fetchone()
        return None if row is None else _entry(row)

    def open_entries(self) -> list[JournalEntry]:
        """Charges whose payment is not settled yet (the watcher's work after a restart)."""
        marks = ",".join("?" * len(OPEN_STATES))
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM charges WHERE state IN ({marks}) ORDER BY created_at",
                OPEN_STATES,
            ).fetchall()
        return [_entry(row) for row in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM charges GROUP BY state").fetchall()
        return {str(state): int(n) for state, n in rows}
