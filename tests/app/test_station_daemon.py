"""The daemon over an EmulatedReader: debounce, failures that must not crash it, one log line."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import pytest
from station_fakes import FakeBoltCard
from station_rig import RemovalWatch, wait_until

from station.app import build_station
from station.daemon import Daemon, JsonFormatter, ReaderSlot
from station.readers.base import ReaderUnavailable
from station.readers.emulated import EmulatedReader
from station.settings import StationSettings
from station.tap.pipeline import TapPipeline
from station.tap.result import ACCEPTED, REFUSED
from station.tap.verifier import StaticKeysVerifier
from station.uplink.base import CardStatus, Delivery, OneAtATime, UplinkUnavailable
from station.uplink.records import TapRecord

UID = bytes.fromhex("04A1B2C3D4E5F6")
K1 = bytes(range(16))
K2 = bytes(range(16, 32))


class CollectingRecorder(OneAtATime):
    def __init__(self) -> None:
        self.sent: list[TapRecord] = []

    def send(self, record: TapRecord) -> Delivery:
        self.sent.append(record)
        return Delivery("delivered", created=True)

    def card_status(self, uid: str) -> CardStatus:
        return CardStatus("active", None)

    def close(self) -> None:
        pass


def lift(st, reader) -> None:  # type: ignore[no-untyped-def]
    """Take the card away and wait until the daemon saw it go: presenting it again any sooner
    (a fixed sleep on a loaded machine) would look like the card never left."""
    before = st.removals.seen
    reader.remove()
    assert st.removals.wait_for_more(before), "the daemon never saw the card leave"


@pytest.fixture
def station(tmp_path: Path):  # type: ignore[no-untyped-def]
    reader = EmulatedReader("test reader")
    removals = RemovalWatch()
    recorder = CollectingRecorder()
    settings = StationSettings(station_name="till-1", outbox_path=tmp_path / "outbox.sqlite",
                               debounce=0.0, confirm_timeout=2.0)
    st = build_station(
        settings,
        verifier=StaticKeysVerifier(K1, K2),
        uplink=recorder,
        slots=[ReaderSlot("emulated", open=lambda: removals.wrap(reader))],
        keep_results=True,
    )
    st.removals = removals  # type: ignore[attr-defined]
    st.daemon.poll = 0.02
    st.forwarder.start()
    st.daemon.start()
    yield st, reader, recorder
    st.shutdown(flush_timeout=2)


def test_card_left_on_the_reader_is_one_tap(station) -> None:  # type: ignore[no-untyped-def]
    st, reader, recorder = station
    card = FakeBoltCard(UID, K1, K2, counter=10)
    reader.present(card)
    assert wait_until(lambda: st.daemon.stats.taps == 1)
    # The card stays in the field: the daemon waits for its removal (and found it still there
    # twice) instead of tapping it again.
    before = st.removals.still_there
    assert wait_until(lambda: st.removals.still_there >= before + 2)
    assert st.daemon.stats.taps == 1
    lift(st, reader)
    reader.present(card)
    assert wait_until(lambda: st.daemon.stats.taps == 2)
    reader.remove()
    assert st.forwarder.flush(5)
    assert [r.idempotency_key for r in recorder.sent] == [f"{UID.hex().upper()}:11",
                                                           f"{UID.hex().upper()}:12"]
    assert reader.feedback_log == [True, True]
    assert [r.outcome for r in st.daemon.stats.results] == [ACCEPTED, ACCEPTED]


def test_replayed_url_is_refused_with_red_feedback(station) -> None:  # type: ignore[no-untyped-def]
    st, reader, recorder = station
    card = FakeBoltCard(UID, K1, K2, counter=3, frozen=True)
    for expected in (1, 2):
        reader.present(card)
        assert wait_until(lambda n=expected: st.daemon.stats.taps == n)
        lift(st, reader)
    assert reader.feedback_log == [True, False]
    assert st.daemon.stats.results[1].reason == "counter_not_increasing"
    assert st.forwarder.flush(5)
    assert [r.outcome for r in recorder.sent] == [ACCEPTED, REFUSED]


def test_foreign_card_logs_one_line_and_records_nothing(station, caplog) -> None:  # type: ignore[no-untyped-def]
    st, reader, recorder = station
    caplog.set_level(logging.INFO)
    reader.present(FakeBoltCard(UID, K1, K2, foreign=True))
    assert wait_until(lambda: st.daemon.stats.unsupported == 1)
    lift(st, reader)
    reader.present(FakeBoltCard(UID, K1, K2, counter=1))
    assert wait_until(lambda: st.daemon.stats.taps == 1)  # still alive
    lines = [r for r in caplog.records if "not a Bolt Card" in r.getMessage()]
    assert len(lines) == 1
    assert st.forwarder.flush(5)
    assert len(recorder.sent) == 1


def test_card_pulled_mid_read_records_nothing(station) -> None:  # type: ignore[no-untyped-def]
    st, reader, _recorder = station
    card = FakeBoltCard(UID, K1, K2, counter=1)
    original = card.transceive

    def pull_after_select(apdu: bytes) -> bytes:
        answer = original(apdu)
        if apdu[1] == 0xA4 and len(card.apdus) == 2:
            reader.remove()  # the card leaves right after answering the file SELECT
        return answer

    card.transceive = pull_after_select  # type: ignore[method-assign]
    reader.present(card)
    assert wait_until(lambda: st.daemon.stats.removed_mid_read == 1)
    assert st.daemon.stats.taps == 0
    assert st.outbox.counts() == {}


class FlakyReader(EmulatedReader):
    """Raises ReaderUnavailable (pcscd gone) while ``unplugged`` is set."""

    def __init__(self) -> None:
        super().__init__("flaky")
        self.unplugged = threading.Event()

    def wait_for_card(self, timeout: float):  # type: ignore[no-untyped-def]
        if self.unplugged.is_set():
            time.sleep(0.01)
            raise ReaderUnavailable("pcscd is not running")
        return super().wait_for_card(timeout)


def test_reader_unplugged_then_back_keeps_the_daemon_running(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO)
    reader = FlakyReader()
    opened: list[int] = []

    def open_reader() -> EmulatedReader:
        opened.append(1)
        return reader

    pipe = TapPipeline(verifier=StaticKeysVerifier(K1, K2), station_name="t")
    daemon = Daemon(pipe, [ReaderSlot("flaky", open=open_reader)], debounce=0, poll=0.02,
                    retry_initial=0.01, retry_max=0.05)
    daemon.start()
    reader.unplugged.set()
    assert wait_until(lambda: daemon.stats.reader_errors >= 4, 10)
    reader.unplugged.clear()
    reader.present(FakeBoltCard(UID, K1, K2, counter=1))
    assert wait_until(lambda: daemon.stats.taps == 1, 10)
    daemon.stop()
    daemon.join(5)
    msgs = [r.getMessage() for r in caplog.records]
    assert sum("unavailable" in m for m in msgs) == 1  # logged once, not per retry
    assert any("is back" in m for m in msgs)
    assert len(opened) >= 2  # reopened after repeated failures


def test_json_tap_line_has_the_fields_and_no_secrets(station, capsys) -> None:  # type: ignore[no-untyped-def]
    st, reader, _recorder = station
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    tap_logger = logging.getLogger("station.tap")
    tap_logger.addHandler(handler)
    tap_logger.setLevel(logging.INFO)
    try:
        card = FakeBoltCard(UID, K1, K2, counter=5)
        reader.present(card)
        assert wait_until(lambda: st.daemon.stats.taps == 1)
    finally:
        tap_logger.removeHandler(handler)
    err = capsys.readouterr().err.strip().splitlines()
    line = json.loads(err[-1])
    assert line["msg"] == "tap"
    assert (line["outcome"], line["counter"], line["apdus"]) == (ACCEPTED, 6, 3)
    assert line["card"] == "04A1…F6"
    assert isinstance(line["ms"], float)
    url = st.daemon.stats.results[0].url
    p = url.split("p=")[1].split("&")[0]
    c = url.split("c=")[1].split("&")[0]
    for secret in (p, c, K1.hex(), K2.hex(), UID.hex().upper()):
        assert secret.lower() not in err[-1].lower()


def test_recorder_unavailable_does_not_block_taps(tmp_path: Path) -> None:
    class Down(CollectingRecorder):
        def send(self, record: TapRecord) -> Delivery:
            raise UplinkUnavailable("down")

    reader = EmulatedReader()
    removals = RemovalWatch()
    st = build_station(
        StationSettings(station_name="s", outbox_path=tmp_path / "o.sqlite", debounce=0,
                        confirm_timeout=0.5),
        verifier=StaticKeysVerifier(K1, K2), uplink=Down(),
        slots=[ReaderSlot("e", open=lambda: removals.wrap(reader))],
    )
    st.removals = removals  # type: ignore[attr-defined]
    st.daemon.poll = 0.02
    st.forwarder.start()
    st.daemon.start()
    card = FakeBoltCard(UID, K1, K2, counter=1)
    for n in range(1, 4):
        reader.present(card)
        assert wait_until(lambda n=n: st.daemon.stats.taps == n)
        lift(st, reader)
    assert reader.feedback_log == [True, True, True]
    assert st.shutdown(flush_timeout=0.1) == 3
