"""The station against the real tracker app (uvicorn on 127.0.0.1, SQLite): outages, crashes,
races and shutdown lose nothing and duplicate nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from station_fakes import DirectLink, FakeBoltCard
from station_rig import RemovalWatch, wait_until
from tracker_live import LiveTracker

from station.app import build_station
from station.daemon import ReaderSlot
from station.outbox.forwarder import Forwarder
from station.outbox.outbox import Outbox
from station.readers.emulated import EmulatedReader
from station.settings import Secret, StationSettings, TrackerLink
from station.tap.pipeline import TapPipeline
from station.tap.result import ACCEPTED, REFUSED, REPLAY
from station.tap.verifier import StaticKeysVerifier
from station.uplink.http import HttpUplink

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
UID = bytes.fromhex("04A1B2C3D4E5F6")
UIDHEX = UID.hex().upper()
K1 = bytes(range(16))
K2 = bytes(range(16, 32))


@pytest.fixture
def tracker(tmp_path: Path):  # type: ignore[no-untyped-def]
    live = LiveTracker(tmp_path)
    live.start()
    yield live
    live.close()


def _station(tmp_path: Path, name: str, tracker_link: TrackerLink, reader: EmulatedReader):  # type: ignore[no-untyped-def]
    settings = StationSettings(station_name=name, outbox_path=tmp_path / f"{name}.sqlite",
                               debounce=0, confirm_timeout=1.0, tracker=tracker_link)
    removals = RemovalWatch()
    st = build_station(settings, verifier=StaticKeysVerifier(K1, K2),
                       slots=[ReaderSlot("emulated", open=lambda: removals.wrap(reader))],
                       keep_results=True, backoff_max=0.1)
    st.removals = removals
    st.daemon.poll = 0.01
    return st


def _tap(st, reader: EmulatedReader, card: FakeBoltCard) -> None:  # type: ignore[no-untyped-def]
    before = st.daemon.stats.taps
    reader.present(card)
    assert wait_until(lambda: st.daemon.stats.taps == before + 1)
    seen = st.removals.seen
    reader.remove()
    # Wait for the daemon to see the card leave: a fixed sleep flakes on a loaded machine.
    assert st.removals.wait_for_more(seen), "the daemon never saw the card leave"


def test_tracker_down_for_a_stretch_of_taps_then_back(tmp_path: Path, tracker) -> None:  # type: ignore[no-untyped-def]
    token = tracker.add_station("till-1")
    reader = EmulatedReader()
    st = _station(tmp_path, "till-1", TrackerLink(url=tracker.url, token=Secret(token)), reader)
    st.forwarder.start()
    st.daemon.start()
    card = FakeBoltCard(UID, K1, K2, counter=0)
    for _ in range(3):
        _tap(st, reader, card)
    tracker.stop()
    for _ in range(5):
        _tap(st, reader, card)
    assert st.outbox.pending_count() >= 5
    tracker.start()
    for _ in range(2):
        _tap(st, reader, card)
    assert st.forwarder.flush(15)
    st.shutdown()
    taps = tracker.taps()
    assert [t["idempotency_key"] for t in taps] == [f"{UIDHEX}:{n}" for n in range(1, 11)]
    assert all(t["outcome"] == ACCEPTED and t["station"] == "till-1" for t in taps)
    assert [r.outcome for r in st.daemon.stats.results] == [ACCEPTED] * 10


def test_direct_mode_writes_into_the_tracker_database(tmp_path: Path, tracker) -> None:  # type: ignore[no-untyped-def]
    reader = EmulatedReader()
    st = _station(tmp_path, "local", TrackerLink(database_url=tracker.database_url), reader)
    st.forwarder.start()
    st.daemon.start()
    card = FakeBoltCard(UID, K1, K2, counter=20, frozen=True)
    _tap(st, reader, card)
    _tap(st, reader, card)  # the same URL again: a replay
    assert st.forwarder.flush(10)
    st.shutdown()
    taps = tracker.taps()
    assert [(t["outcome"], t["counter"], t["reason"]) for t in taps] == [
        (ACCEPTED, 20, None), (REFUSED, 20, REPLAY)]


def test_replay_the_station_never_saw_is_refused_by_the_tracker(tmp_path: Path, tracker) -> None:  # type: ignore[no-untyped-def]
    """A second station whose memory is empty still refuses a URL the tracker already has."""
    results = []
    card = FakeBoltCard(UID, K1, K2, counter=4, frozen=True)
    for name in ("till-1", "till-2"):
        token = tracker.add_station(name)
        box = Outbox(tmp_path / f"{name}.sqlite", station_name=name)
        fwd = Forwarder(box, HttpUplink(httpx.Client(base_url=tracker.url), token))
        fwd.start()
        pipe = TapPipeline(verifier=StaticKeysVerifier(K1, K2), station_name=name, memory=box,
                           outbox=box, verdicts=fwd, confirm_timeout=5)
        results.append(pipe.process(DirectLink(card)))
        assert fwd.flush(5)
        fwd.stop()
    assert [(r.outcome, r.reason) for r in results] == [(ACCEPTED, None), (REFUSED, REPLAY)]


def test_two_stations_racing_on_one_card_accept_exactly_once(tmp_path: Path, tracker) -> None:  # type: ignore[no-untyped-def]
    card = FakeBoltCard(UID, K1, K2, counter=9, frozen=True)
    url = card.current_url()
    pipes = []
    forwarders = []
    for name in ("till-1", "till-2"):
        token = tracker.add_station(name)
        box = Outbox(tmp_path / f"{name}.sqlite", station_name=name)
        fwd = Forwarder(box, HttpUplink(httpx.Client(base_url=tracker.url), token))
        fwd.start()
        forwarders.append(fwd)
        pipes.append(TapPipeline(verifier=StaticKeysVerifier(K1, K2), station_name=name,
                                 memory=box, outbox=box, verdicts=fwd, confirm_timeout=5))
    barrier = threading.Barrier(2)
    results = [None, None]

    def run(i: int) -> None:
        link = DirectLink(FakeBoltCard(UID, K1, K2, url=url))
        barrier.wait()
        results[i] = pipes[i].process(link)  # type: ignore[call-overload]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    for fwd in forwarders:
        assert fwd.flush(10)
        fwd.stop()
    outcomes = sorted(r.outcome for r in results)  # type: ignore[union-attr]
    assert outcomes == [ACCEPTED, REFUSED]
    accepted = [t for t in tracker.taps() if t["outcome"] == ACCEPTED]
    assert len(accepted) == 1 and accepted[0]["counter"] == 9


def _daemon_proc(tmp_path: Path, tracker, token: str, start: int, *extra: str):  # type: ignore[no-untyped-def]
    return subprocess.Popen(
        [sys.executable, str(HERE / "daemon_proc.py"), str(tmp_path / "crashy.sqlite"),
         tracker.url, token, str(start), *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def _read_acks(proc, until: int) -> list[str]:  # type: ignore[no-untyped-def]
    acks = []
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("ACK "):
            acks.append(line.split()[1])
            if len(acks) >= until:
                break
    return acks


def test_sigkill_mid_run_then_restart_loses_and_duplicates_nothing(tmp_path: Path, tracker) -> None:  # type: ignore[no-untyped-def]
    token = tracker.add_station("crashy")
    proc = _daemon_proc(tmp_path, tracker, token, 100)
    acked = _read_acks(proc, 15)
    tracker.stop()  # some taps are still only in the outbox when the daemon dies
    acked += _read_acks(proc, 5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    tracker.start()
    # Restart with a higher counter (the card's counter only goes up) and stop after 3 taps.
    proc = _daemon_proc(tmp_path, tracker, token, 1000, "3")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    acked += [ln.split()[1] for ln in out.splitlines() if ln.startswith("ACK ")]
    keys = [t["idempotency_key"] for t in tracker.taps() if t["outcome"] == ACCEPTED]
    assert len(keys) == len(set(keys))  # nothing twice
    acked_accepted = [k for k in acked if k != "refused"]
    assert set(acked_accepted) <= set(keys)  # nothing acknowledged is lost
    assert len(acked_accepted) >= 23


def test_sigterm_finishes_flushes_and_exits_0(tmp_path: Path, tracker) -> None:  # type: ignore[no-untyped-def]
    token = tracker.add_station("crashy")
    proc = _daemon_proc(tmp_path, tracker, token, 1)
    acked = _read_acks(proc, 5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    acked += [ln.split()[1] for ln in out.splitlines() if ln.startswith("ACK ")]
    keys = [t["idempotency_key"] for t in tracker.taps()]
    assert sorted(k for k in acked if k != "refused") == sorted(keys)
    assert Outbox(tmp_path / "crashy.sqlite").pending_count() == 0
