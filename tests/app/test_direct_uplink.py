"""A station writing straight into the tracker's database settles a backlog as one batch, with
the answers and rows that sending its records one by one gives.

Two tracker databases (SQLite files) start from the same state: the card was tapped before
(counter 3) and another card is blocked. One gets the backlog through ``send_batch`` (the
tracker's ``record_many``: set-based runs), the twin gets the same records through ``send``,
one at a time. A record the tracker can never store (a NUL byte in the issuer host) is dead
on its own in both, and the records after it are still stored.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from station.uplink.base import BLOCKED, CONFLICT, DELIVERED, REJECTED
from station.uplink.direct import DirectUplink
from station.uplink.records import TapRecord
from tracker import migrations
from tracker.db import make_engine

CARD = "04A1B2C3D4E5F6"
BLOCKED_CARD = "04B0B0B0B0B0B0"


def tap(uid: str, counter: int, *, outcome: str = "accepted", host: str = "pay.example.com",
        reason: str | None = None) -> TapRecord:
    key = f"{uid}:{counter}" if outcome == "accepted" else f"till:{uuid.UUID(int=counter)}"
    return TapRecord(idempotency_key=key, card_uid=uid, card_id=None, counter=counter,
                     station_time=datetime(2026, 12, 6, 12, 0, tzinfo=UTC).isoformat(),
                     outcome=outcome, reason=reason, issuer_host=host)


def backlog() -> list[TapRecord]:
    return [
        *(tap(CARD, n) for n in range(4, 40)),  # a run of the common case: delivered
        tap(CARD, 2),  # below the card's counter: conflict
        tap(CARD, 40, host="pay\x00.example.com"),  # never storable: dead (422)
        tap(CARD, 41),  # delivered after the dead one
        tap(BLOCKED_CARD, 9),  # blocked
        tap(CARD, 41, outcome="refused", reason="replay"),  # a refused tap: delivered
        tap(CARD, 41),  # the same record again: delivered, not created
        *(tap(f"04C0{n:010X}", 1) for n in range(200)),  # new cards
    ]


def tracker_db(path: Path) -> str:
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    migrations.upgrade(engine)
    engine.dispose()
    uplink = DirectUplink(url, "till")
    try:
        for record in (tap(CARD, 3), tap(BLOCKED_CARD, 1)):
            assert uplink.send(record).state == DELIVERED
    finally:
        uplink.close()
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE card SET status = 'blocked' WHERE uid = :u"),
                     {"u": BLOCKED_CARD})
    engine.dispose()
    return url


def rows(url: str) -> Any:
    engine = make_engine(url)
    with engine.connect() as conn:
        taps = conn.execute(sa.text(
            "SELECT c.uid, t.counter, t.outcome, t.idempotency_key FROM tap t"
            " JOIN card c ON c.id = t.card_pk ORDER BY t.id")).all()
        cards = conn.execute(sa.text(
            "SELECT uid, last_counter, status FROM card ORDER BY uid")).all()
    engine.dispose()
    return [tuple(r) for r in taps], [tuple(r) for r in cards]


def test_a_backlog_sent_as_a_batch_settles_like_records_sent_one_by_one(tmp_path: Path) -> None:
    batched_url, single_url = tracker_db(tmp_path / "a.sqlite"), tracker_db(tmp_path / "b.sqlite")
    records = backlog()

    uplink = DirectUplink(batched_url, "till")
    try:
        batched = uplink.send_batch(records)
    finally:
        uplink.close()
    uplink = DirectUplink(single_url, "till")
    try:
        singles = [uplink.send(r) for r in records]
    finally:
        uplink.close()

    states = [d.state for d in singles]
    assert states[:36] == [DELIVERED] * 36
    assert states[36:42] == [CONFLICT, REJECTED, DELIVERED, BLOCKED, DELIVERED, DELIVERED]
    assert singles[36].last_counter == 39
    assert singles[41].created is False
    assert "issuer_host" in (singles[37].detail or "")
    assert batched == singles
    assert rows(batched_url) == rows(single_url)
    assert len(rows(batched_url)[0]) == 2 + 36 + 1 + 1 + 200
