"""The station's line to the tracker never jams: the real outbox and forwarder against the
real tracker (uvicorn on 127.0.0.1, SQLite and PostgreSQL)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text
from tracker_server import running_server
from tracker_testlib import StationCredentials

from station.outbox.forwarder import Forwarder
from station.outbox.outbox import Outbox
from station.tap.pipeline import _host
from station.uplink.base import DELIVERED, REJECTED
from station.uplink.http import HttpUplink
from station.uplink.records import TapRecord
from tracker.settings import TrackerSettings

UID = "04A1B2C3D4E5F6"


def accepted(counter: int, uid: str = UID) -> TapRecord:
    return TapRecord(
        idempotency_key=f"{uid}:{counter}", card_uid=uid, card_id=None, counter=counter,
        station_time=datetime.now(UTC).isoformat(), outcome="accepted", reason=None,
        issuer_host="pay.example.com",
    )


def refused(host: str | None, station: str = "till-1") -> TapRecord:
    return TapRecord(
        idempotency_key=f"{station}:{uuid.uuid4()}", card_uid=UID, card_id=None, counter=0,
        station_time=datetime.now(UTC).isoformat(), outcome="refused",
        reason="host_not_allowed", issuer_host=host,
    )


@pytest.fixture
def live(settings: TrackerSettings, engine: Engine) -> Iterator[str]:
    with running_server(settings, engine) as base:
        yield base


def uplink(base: str, creds: StationCredentials) -> HttpUplink:
    return HttpUplink(httpx.Client(base_url=base, timeout=5.0), creds.token)


def wait_for(check, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def stored_keys(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT idempotency_key FROM tap ORDER BY id"))]


def test_a_poison_record_is_set_aside_as_dead_and_the_line_keeps_flowing(
    tmp_path: Path, live: str, engine: Engine, station: StationCredentials,
    caplog: pytest.LogCaptureFixture,
) -> None:
    host = _host("lnurlw://evil\x00.example.com/ln?p=00&c=00")
    assert host is not None and "\x00" in host  # what a card can make the pipeline keep
    box = Outbox(tmp_path / "outbox.sqlite", station_name=station.name)
    poison = refused(host)
    box.append(poison)
    for counter in (1, 2, 3):
        box.append(accepted(counter))
    fwd = Forwarder(box, uplink(live, station), backoff_initial=0.05, backoff_max=0.2)
    with caplog.at_level(logging.INFO, logger="station.outbox"):
        fwd.start()
        try:
            assert fwd.flush(20), box.counts()
        finally:
            fwd.stop()
    assert stored_keys(engine) == [f"{UID}:{n}" for n in (1, 2, 3)]
    assert box.counts() == {DELIVERED: 3, REJECTED: 1, "dead": 1}
    health = fwd.health()
    assert (health.dead, health.pending, health.delivered) == (1, 0, 3)
    assert health.online and health.problem is None
    dead = [r for r in caplog.records if "for good" in r.getMessage()]
    assert len(dead) == 1  # logged once, with the status and the tracker's reason
    line = dead[0].getMessage()
    assert "HTTP 422" in line and "issuer_host" in line and "tap" in line
    assert "\x00" not in line and station.token not in caplog.text
    box.close()


def test_a_dead_record_is_never_sent_again_after_a_restart(
    tmp_path: Path, live: str, engine: Engine, station: StationCredentials,
) -> None:
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path, station_name=station.name)
    box.append(refused("a\x00b"))
    box.append(accepted(7))
    fwd = Forwarder(box, uplink(live, station), backoff_initial=0.05)
    fwd.start()
    assert fwd.flush(20)
    fwd.stop()
    box.close()
    again = Outbox(path, station_name=station.name)
    assert again.next_pending() is None and again.counts()["dead"] == 1
    again.close()
    assert stored_keys(engine) == [f"{UID}:7"]


def set_page_limit(box: Outbox, pages: int | None) -> None:
    """A size limit on the outbox file, as a full disk would set it."""
    with box._lock:
        if pages is None:
            pages = 1 << 30
        box._db.execute(f"PRAGMA max_page_count = {int(pages)}")


def test_a_full_outbox_disk_is_survived_reported_and_nothing_is_forgotten(
    tmp_path: Path, live: str, engine: Engine, station: StationCredentials,
    caplog: pytest.LogCaptureFixture,
) -> None:
    box = Outbox(tmp_path / "outbox.sqlite", station_name=station.name)
    for counter in range(1, 201):
        box.append(accepted(counter))
    pages = box._db.execute("PRAGMA page_count").fetchone()[0]
    set_page_limit(box, pages)  # the disk is full: the answers cannot be written down
    fwd = Forwarder(box, uplink(live, station), backoff_initial=0.05, backoff_max=0.2)
    with caplog.at_level(logging.INFO, logger="station.outbox"):
        fwd.start()
        try:
            wait_for(lambda: fwd.health().problem is not None)
            time.sleep(0.5)  # several failed steps, with backoff
            health = fwd.health()
            assert health.forwarding and not health.ok  # the thread survived and says why
            assert "disk full" in (health.problem or "") and str(box.path) in health.problem
            assert health.pending and health.pending + (health.delivered or 0) == 200
            assert "cannot rollback" not in caplog.text
            assert len([r for r in caplog.records if "disk full" in r.getMessage()]) == 1
            set_page_limit(box, None)  # space freed
            assert fwd.flush(30), box.counts()
            health = fwd.health()
            assert health.ok and health.problem is None and health.delivered == 200
        finally:
            fwd.stop()
    keys = stored_keys(engine)
    assert keys == [f"{UID}:{n}" for n in range(1, 201)]  # all there, once, in order
    assert any("recovered" in r.getMessage() for r in caplog.records)
    box.close()


def test_a_day_of_backlog_lands_in_batches_exactly_once_in_order(
    tmp_path: Path, live: str, engine: Engine, station: StationCredentials,
    record_property,  # type: ignore[no-untyped-def]
) -> None:
    box = Outbox(tmp_path / "outbox.sqlite", station_name=station.name)
    n, cards = 20_000, 200
    expected = []
    with box._lock:  # spool fast for the test (one transaction); append() is the same insert
        box._db.execute("BEGIN")
        for i in range(n):
            uid = f"04{i % cards:012X}"
            record = accepted(i // cards + 1, uid)
            if i == n // 2:
                record = refused("x\x00y")  # a dead one in the middle does not stop the rest
            box._insert(record)
            expected.append(record.idempotency_key)
        box._db.execute("COMMIT")
    requests: list[int] = []

    def count(request: httpx.Request) -> None:
        requests.append(1)

    client = httpx.Client(base_url=live, timeout=30.0, event_hooks={"request": [count]})
    fwd = Forwarder(box, HttpUplink(client, station.token), backoff_initial=0.05)
    start = time.perf_counter()
    fwd.start()
    try:
        assert fwd.flush(300), box.counts()
    finally:
        fwd.stop()
    took = time.perf_counter() - start
    record_property("backlog_records_per_s", round(n / took))
    print(f"\n{n} spooled taps delivered in {took:.1f} s ({n / took:,.0f}/s, "
          f"{len(requests)} requests)")
    assert stored_keys(engine) == [k for i, k in enumerate(expected) if i != n // 2]
    assert box.counts() == {DELIVERED: n - 1, REJECTED: 1, "dead": 1}
    assert len(requests) <= n // 500 + 5  # batches, not one request per record
    box.close()
