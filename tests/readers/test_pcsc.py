"""The pyscard backend against the real pcscd, with our card behind Debian's vpcd driver.

Nothing here is mocked: pcscd polls vpcd, vpcd talks TCP to our VpcdBridge, and the backend sees
the card exactly as it would see one on an ACR122U.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pcscd_harness import Pcscd

from station.emulator.bridges.vpcd import VpcdBridge
from station.readers.base import CardLink, CardRemoved, Reader, ReaderUnavailable
from station.readers.pcsc import PcscReader, list_reader_names

from .fakes import NDEF_AID, StubCard

pytestmark = pytest.mark.pcsc

# vpcd's second slot (TCP 35964): the first one is what other suites (station e2e) use, so
# developers running both at once do not fight over one virtual card slot.
SLOT = "Virtual PCD 00 01"
PORT = 35964
SELECT_NDEF_APP = bytes.fromhex("00A4040007") + NDEF_AID + b"\x00"
GET_UID = bytes.fromhex("FFCA000000")


@pytest.fixture
def card() -> StubCard:
    return StubCard(uid=bytes.fromhex("04010203040506"))


def _wait_slot_empty() -> None:
    """pcscd polls vpcd every ~400 ms: let it see the previous test's card leave first."""
    watcher = PcscReader(SLOT, retry_delay=0.05)
    try:
        watcher.wait_for_removal(5.0)
    finally:
        watcher.close()


@pytest.fixture
def bridge(pcscd: Pcscd, card: StubCard) -> Iterator[VpcdBridge]:
    _wait_slot_empty()
    b = VpcdBridge(card, port=PORT)
    yield b
    b.remove()


@pytest.fixture
def reader(pcscd: Pcscd) -> Iterator[PcscReader]:
    r = PcscReader(SLOT, retry_delay=0.05)
    yield r
    r.close()


def test_lists_the_vpcd_reader(pcscd: Pcscd) -> None:
    assert {"Virtual PCD 00 00", SLOT} <= set(list_reader_names())


def test_reader_satisfies_the_seam(reader: PcscReader) -> None:
    assert isinstance(reader, Reader)
    assert reader.backend == "pcsc"


def test_no_card_means_none(reader: PcscReader) -> None:
    assert reader.wait_for_card(0.3) is None


def test_inserted_card_answers_select_and_uid(
    reader: PcscReader, bridge: VpcdBridge, card: StubCard
) -> None:
    bridge.insert()
    link = reader.wait_for_card(5.0)
    assert link is not None and isinstance(link, CardLink)
    assert link.transceive(SELECT_NDEF_APP) == b"\x90\x00"
    assert link.transceive(GET_UID) == card.uid + b"\x90\x00"
    assert SELECT_NDEF_APP in card.apdus  # it really went through pcscd to our card
    # a 256-byte answer (Le = 00) survives the round trip intact
    assert link.transceive(bytes.fromhex("00B0000000")) == bytes(range(256)) + b"\x90\x00"
    link.close()
    link.close()  # idempotent


def test_removal_mid_exchange_raises_card_removed(reader: PcscReader, bridge: VpcdBridge) -> None:
    bridge.insert()
    link = reader.wait_for_card(5.0)
    assert link is not None
    assert link.transceive(SELECT_NDEF_APP) == b"\x90\x00"
    bridge.remove()
    with pytest.raises(CardRemoved):
        link.transceive(bytes.fromhex("00B0000010"))
    assert reader.wait_for_removal(5.0) is True
    with pytest.raises(CardRemoved):
        link.transceive(SELECT_NDEF_APP)  # the dead link stays dead


def test_wait_for_removal_times_out_while_card_stays(
    reader: PcscReader, bridge: VpcdBridge
) -> None:
    bridge.insert()
    assert reader.wait_for_card(5.0) is not None
    assert reader.wait_for_removal(0.3) is False


def test_feedback_reaches_the_reader_as_acr122u_led_apdu(
    reader: PcscReader, bridge: VpcdBridge, card: StubCard
) -> None:
    bridge.insert()
    assert reader.wait_for_card(5.0) is not None
    reader.feedback(True)
    ok = card.last_feedback
    reader.feedback(False)
    bad = card.last_feedback
    assert ok is not None and bad is not None
    # ACS ACR122U API: FF 00 40 P2 04 T1 T2 repetitions link-to-buzzer
    assert ok[:3] == bad[:3] == b"\xff\x00\x40" and ok[4] == bad[4] == 4 and len(ok) == 9
    assert ok[3] & 0x80 and not ok[3] & 0x40  # accepted: green blinks, red does not
    assert bad[3] & 0x40 and not bad[3] & 0x80  # rejected: red blinks, green does not
    assert ok[8] and bad[8]  # both beep
    assert bad[5] > ok[5]  # the rejection beep is longer


def test_feedback_after_the_daemon_closed_the_link(
    reader: PcscReader, bridge: VpcdBridge, card: StubCard
) -> None:
    bridge.insert()
    link = reader.wait_for_card(5.0)
    assert link is not None
    link.close()  # the daemon releases the card before it gives feedback
    reader.feedback(False)
    assert card.last_feedback is not None and card.last_feedback[3] & 0x40


def test_feedback_without_card_is_silently_skipped(reader: PcscReader) -> None:
    reader.feedback(True)  # vpcd refuses the escape command: must not raise


def test_unknown_reader_is_unavailable(pcscd: Pcscd) -> None:
    r = PcscReader("No Such Reader 99", retry_delay=0.05)
    try:
        with pytest.raises(ReaderUnavailable):
            r.wait_for_card(0.3)
    finally:
        r.close()


def test_recovers_after_pcscd_restart(
    pcscd: Pcscd, reader: PcscReader, bridge: VpcdBridge, card: StubCard
) -> None:
    bridge.insert()
    link = reader.wait_for_card(5.0)
    assert link is not None
    assert link.transceive(GET_UID) == card.uid + b"\x90\x00"

    pcscd.stop()  # the service is gone: not "no card", an error the daemon logs
    with pytest.raises(ReaderUnavailable):
        reader.wait_for_card(0.5)
    with pytest.raises((ReaderUnavailable, CardRemoved)):
        link.transceive(GET_UID)

    pcscd.start()
    bridge.insert()  # vpcd's old TCP link died with pcscd; the card reconnects
    link = reader.wait_for_card(10.0)
    assert link is not None
    assert link.transceive(GET_UID) == card.uid + b"\x90\x00"
    assert reader.recoveries >= 1
    assert SLOT in list_reader_names()


def test_vpcd_command_line_serves_a_card_and_saves_its_state(
    pcscd: Pcscd, reader: PcscReader, tmp_path: Path
) -> None:
    from station.emulator.state import load_state, save_state
    from station.ntag424.flows import drive, read_sun_url

    from .fakes import bolt_card

    _wait_slot_empty()
    state = tmp_path / "card.json"
    card = bolt_card()
    save_state(state, card.to_state())  # type: ignore[attr-defined]
    before = json.dumps(load_state(state), sort_keys=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "station.emulator.bridges.vpcd", "--state", str(state),
         "--port", str(PORT)],
        stderr=subprocess.PIPE,
    )
    try:
        link = reader.wait_for_card(10.0)
        assert link is not None
        url = drive(read_sun_url(), link.transceive)
        assert url.startswith("lnurlw://card.example.com/ln?p=")
        link.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err.decode()
    # the SDM read counter moved and was written back: the next run continues from there
    assert json.dumps(load_state(state), sort_keys=True) != before
