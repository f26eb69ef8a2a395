"""The outbox: durable spool, replay memory, and exactly-once forwarding in order."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import httpx
import pytest
from station_fakes import FakeTracker

from station.outbox.forwarder import Forwarder
from station.outbox.outbox import SCHEMA_VERSION, LocalReplay, Outbox, OutboxVersionError
from station.uplink.base import (
    CONFLICT,
    DELIVERED,
    PENDING,
    REJECTED,
    CardStatus,
    Delivery,
    OneAtATime,
    UplinkUnavailable,
)
from station.uplink.http import HttpUplink
from station.uplink.records import ClaimRecord, TapRecord

REPO = Path(__file__).resolve().parents[2]


def rec(uid: str, counter: int, outcome: str = "accepted", key: str | None = None) -> TapRecord:
    return TapRecord(
        idempotency_key=key or f"{uid}:{counter}",
        card_uid=uid,
        card_id=None,
        counter=counter,
        station_time="2026-11-26T10:00:00.000+00:00",
        outcome=outcome,
        reason=None if outcome == "accepted" else "counter_not_increasing",
        issuer_host="pay.example.com",
    )


class FlakyRecorder(OneAtATime):
    """Records what it stores; unavailable while ``down`` is set."""

    def __init__(self) -> None:
        self.stored: list[str] = []
        self.down = threading.Event()
        self.calls = 0

    def send(self, record: TapRecord) -> Delivery:
        self.calls += 1
        if self.down.is_set():
            raise UplinkUnavailable("down")
        if record.idempotency_key in self.stored:
            return Delivery(DELIVERED, created=False)
        self.stored.append(record.idempotency_key)
        return Delivery(DELIVERED, created=True)

    def card_status(self, uid: str) -> CardStatus:
        return CardStatus("unknown", None)

    def close(self) -> None:
        pass


def test_append_survives_reopen_and_keeps_order(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path)
    seqs = [box.append(rec("04AABBCCDDEEFF", n)) for n in (1, 2, 3)]
    box.close()
    # Another connection (another process after a crash) sees every record, in order.
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = db.execute("SELECT seq, state FROM outbox ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == seqs and all(r[1] == PENDING for r in rows)
    again = Outbox(path)
    assert again.last_counter("04AABBCCDDEEFF") == 3
    assert again.next_pending().record.counter == 1  # type: ignore[union-attr]


def test_replay_memory_refuses_same_or_lower_counter(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    box.append(rec("04AA", 5))
    for counter in (5, 4):
        with pytest.raises(LocalReplay) as err:
            box.append(rec("04AA", counter, key=f"other:{counter}"))
        assert err.value.last_counter == 5
    # A refused tap is recorded but does not move the memory.
    box.append(rec("04AA", 2, outcome="refused", key="st:uuid-1"))
    assert box.last_counter("04AA") == 5
    assert box.counts() == {PENDING: 2}


def test_forwarder_sends_in_order_exactly_once_across_an_outage(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    recorder = FlakyRecorder()
    fwd = Forwarder(box, recorder, backoff_initial=0.01, backoff_max=0.05)
    fwd.start()
    box.append(rec("04AA", 1))
    fwd.kick()
    assert fwd.flush(5)
    recorder.down.set()
    for n in range(2, 12):
        box.append(rec("04AA", n))
        fwd.kick()
    # While down, nothing leaves and nothing is lost.
    assert fwd.await_verdict(2, 0.2) is None
    assert box.pending_count() == 10
    recorder.down.clear()
    assert fwd.flush(5)
    fwd.stop()
    assert recorder.stored == [f"04AA:{n}" for n in range(1, 12)]
    assert box.counts() == {DELIVERED: 11}


def _mock_client(handler) -> httpx.Client:  # type: ignore[no-untyped-def]
    return httpx.Client(base_url="http://tracker.test", transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("code", "body", "state", "last"),
    [
        (201, {"tap": {}, "created": True}, DELIVERED, None),
        (200, {"tap": {}, "created": False}, DELIVERED, None),
        (409, {"detail": {"reason": "counter_not_increasing", "last_counter": 7}}, CONFLICT, 7),
        (403, {"detail": {"reason": "card_blocked"}}, "blocked", None),
        (422, {"detail": [{"loc": ["body", "counter"]}]}, "rejected", None),
    ],
)
def test_http_recorder_maps_final_answers(
    code: int, body: dict, state: str, last: int | None
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(code, json=body)

    delivery = HttpUplink(_mock_client(handler), "s3cret-token").send(rec("04AA", 1))
    assert delivery.state == state
    assert delivery.last_counter == last
    assert seen[0].headers["Authorization"] == "Bearer s3cret-token"
    assert seen[0].url.path == "/api/v1/taps"


@pytest.mark.parametrize("code", [401, 500, 502, 503])
def test_http_recorder_retries_what_may_succeed_later(code: int) -> None:
    recorder = HttpUplink(_mock_client(lambda r: httpx.Response(code, json={})), "tok-xyz")
    with pytest.raises(UplinkUnavailable) as err:
        recorder.send(rec("04AA", 1))
    assert "tok-xyz" not in str(err.value)


def test_http_recorder_connection_refused_is_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(UplinkUnavailable):
        HttpUplink(_mock_client(handler), "t").send(rec("04AA", 1))


def test_tracker_down_for_a_stretch_then_back_loses_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    tracker = FakeTracker()
    tracker.start()
    port = tracker.port
    box = Outbox(tmp_path / "o.sqlite")
    client = httpx.Client(base_url=tracker.url, timeout=2.0)
    fwd = Forwarder(box, HttpUplink(client, "tok-A"), backoff_initial=0.01, backoff_max=0.05)
    fwd.start()
    for n in range(1, 4):
        box.append(rec("04AA", n))
        fwd.kick()
    assert fwd.flush(5)
    tracker.stop()
    for n in range(4, 14):
        box.append(rec("04AA", n))
        fwd.kick()
    assert not fwd.flush(0.3)
    assert not fwd.online
    tracker.start(port)  # back on the same address
    assert fwd.flush(10)
    fwd.stop()
    tracker.stop()
    assert sorted(tracker.taps) == sorted(f"04AA:{n}" for n in range(1, 14))
    assert tracker.cards["04AA"]["last_counter"] == 13


CRASH_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, httpx
    from station.outbox.forwarder import Forwarder
    from station.outbox.outbox import Outbox
    from station.uplink.http import HttpUplink

    class DieAfterSend(HttpUplink):
        def send(self, record):
            delivery = super().send(record)
            if record.counter == int(sys.argv[3]):
                os.kill(os.getpid(), signal.SIGKILL)  # sent, but never marked as sent
            return delivery

    box = Outbox(sys.argv[1])
    fwd = Forwarder(box, DieAfterSend(httpx.Client(base_url=sys.argv[2]), "tok-A"), batch_size=1)
    fwd.start()
    fwd.flush(20)
    """
)


def test_crash_between_send_and_mark_is_resent_but_stored_once(tmp_path: Path) -> None:
    tracker = FakeTracker()
    tracker.start()
    path = tmp_path / "o.sqlite"
    box = Outbox(path)
    for n in range(1, 6):
        box.append(rec("04AA", n))
    box.close()
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, str(path), tracker.url, "3"],
        cwd=REPO, capture_output=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert sorted(tracker.taps) == ["04AA:1", "04AA:2", "04AA:3"]
    box = Outbox(path)
    assert box.pending_count() == 3  # 3 was sent but not marked; 4 and 5 never sent
    fwd = Forwarder(box, HttpUplink(httpx.Client(base_url=tracker.url), "tok-A"))
    fwd.start()
    assert fwd.flush(10)
    fwd.stop()
    tracker.stop()
    assert sorted(tracker.taps) == [f"04AA:{n}" for n in range(1, 6)]
    assert tracker.posts == 6  # one re-send, answered "already stored"
    assert box.delivery(3) == Delivery(DELIVERED, created=False)


def test_prune_forgets_only_old_settled_records(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    old = box.append(rec("04AA", 1))
    box.append(rec("04AA", 2))  # pending: kept however old
    recent = box.append(rec("04AA", 3))
    box.settle(old, Delivery(DELIVERED))
    box.settle(recent, Delivery(DELIVERED))
    assert box.prune(older_than=3600) == 0
    with sqlite3.connect(tmp_path / "o.sqlite") as db:
        db.execute("UPDATE outbox SET settled_at = settled_at - 7200 WHERE seq = ?", (old,))
    assert box.prune(older_than=3600) == 1
    assert box.counts() == {DELIVERED: 1, PENDING: 1}
    assert box.last_counter("04AA") == 3  # the replay memory stays


# -- record kinds, schema version ----------------------------------------------------------------

# The outbox schema as station releases before issue 7 wrote it (v1: taps only, no version).
_V1_SCHEMA = """
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


def claim(state: str = "sending", claim_id: str = "c" * 32) -> ClaimRecord:
    return ClaimRecord(
        claim_id=claim_id, tap_key="04AA:5", state=state, amount_msat=21_000, memo="coffee",
        bolt11=None, payment_hash=None, issuer_host="pay.example.com", k1_hash="ab" * 32,
        reason=None, station_time="2026-11-26T10:00:00.000+00:00",
    )


def test_a_v1_outbox_file_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    old_body = {k: v for k, v in rec("04AA", 3).to_body().items() if k != "verified"}
    with sqlite3.connect(path) as db:
        db.executescript(_V1_SCHEMA)
        db.execute("INSERT INTO outbox(idempotency_key, body, created_at) VALUES (?, ?, 1.0)",
                   ("04AA:3", json.dumps(old_body)))
        db.execute("INSERT INTO counters(uid, last_counter) VALUES ('04AA', 3)")
    box = Outbox(path)
    entry = box.next_pending()
    assert entry is not None and entry.record == rec("04AA", 3)  # verified defaults to True
    assert box.last_counter("04AA") == 3
    with pytest.raises(LocalReplay):
        box.append(rec("04AA", 3, key="again:3"))
    box.append(claim())
    box.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        kinds = db.execute("SELECT kind FROM outbox ORDER BY seq").fetchall()
    assert kinds == [("tap",), ("claim",)]
    assert Outbox(path).counts() == {PENDING: 2}  # opening a v2 file again changes nothing


def test_an_outbox_from_a_newer_station_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(OutboxVersionError, match="upgrade the station"):
        Outbox(path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1


def test_claim_states_go_out_in_order_each_under_its_own_key(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    sent: list[tuple[str, str, str]] = []

    class Recording(FlakyRecorder):
        def send(self, record):  # type: ignore[no-untyped-def]
            what = record.state if isinstance(record, ClaimRecord) else record.outcome
            sent.append((record.kind, what, record.idempotency_key))
            return Delivery(DELIVERED, created=True)

    box.append(rec("04AA", 5))
    first, second = claim("sending"), claim("paid")
    box.append(first)
    box.append(second)
    fwd = Forwarder(box, Recording(), backoff_initial=0.01)
    fwd.start()
    assert fwd.flush(5)
    fwd.stop()
    assert [(k, s) for k, s, _key in sent] == [("tap", "accepted"), ("claim", "sending"),
                                                ("claim", "paid")]
    assert first.idempotency_key != second.idempotency_key
    assert [key for _k, _s, key in sent[1:]] == [first.idempotency_key, second.idempotency_key]


def test_a_tap_body_says_verified_and_a_claim_body_is_the_contract() -> None:
    assert rec("04AA", 1).to_body()["verified"] is True
    assert set(claim().to_body()) == {
        "claim_id", "tap_key", "state", "amount_msat", "memo", "bolt11", "payment_hash",
        "issuer_host", "k1_hash", "reason", "station_time",
    }


@pytest.mark.parametrize(
    ("code", "body", "state"),
    [
        (201, {"created": True}, DELIVERED),
        (200, {"created": False}, DELIVERED),
        (422, {"detail": [{"loc": ["body", "amount_msat"]}]}, REJECTED),
    ],
)
def test_http_uplink_posts_claims_and_maps_the_answers(code: int, body: dict, state: str) -> None:  # type: ignore[type-arg]
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(code, json=body)

    delivery = HttpUplink(_mock_client(handler), "tok-claims").send(claim())
    assert delivery.state == state
    assert seen[0].url.path == "/api/v1/claims"
    assert seen[0].headers["Authorization"] == "Bearer tok-claims"
    assert json.loads(seen[0].content) == claim().to_body()


def test_http_uplink_keeps_a_claim_the_tracker_refused_the_token_for() -> None:
    client = _mock_client(lambda r: httpx.Response(401, json={"detail": "bad token"}))
    with pytest.raises(UplinkUnavailable, match="STATION_TRACKER_TOKEN"):
        HttpUplink(client, "wrong").send(claim())
