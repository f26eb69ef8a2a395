"""The in-process reader: the daemon's view of present/remove, with the real EmulatedCard."""

from __future__ import annotations

import threading

import pytest

from station.emulator.card import EmulatedCard
from station.ntag424.flows import drive, read_sun_url
from station.readers.base import CardLink, CardRemoved, Reader
from station.readers.emulated import EmulatedReader

from .fakes import NDEF_AID, bolt_card

SELECT_NDEF_APP = bytes.fromhex("00A4040007") + NDEF_AID + b"\x00"
UID = bytes.fromhex("04112233445566")


@pytest.fixture
def reader() -> EmulatedReader:
    return EmulatedReader()


def test_satisfies_the_seam(reader: EmulatedReader) -> None:
    assert isinstance(reader, Reader)
    assert reader.backend == "emulated"


def test_empty_field_means_no_card(reader: EmulatedReader) -> None:
    assert reader.wait_for_card(0.01) is None
    assert reader.wait_for_removal(0.0) is True


def test_present_wakes_a_waiting_thread(reader: EmulatedReader) -> None:
    got: list[CardLink | None] = []
    waiter = threading.Thread(target=lambda: got.append(reader.wait_for_card(30.0)))
    waiter.start()
    reader.present(EmulatedCard.factory(UID))
    waiter.join(30.0)
    assert got and got[0] is not None


def test_apdus_reach_the_card(reader: EmulatedReader) -> None:
    reader.present(EmulatedCard.factory(UID))
    link = reader.wait_for_card(1.0)
    assert isinstance(link, CardLink)
    assert link.transceive(SELECT_NDEF_APP) == b"\x90\x00"
    assert link.transceive(bytes.fromhex("FFCA000000")) == UID + b"\x90\x00"
    assert link.transceive(bytes.fromhex("00A4040007A0000000000000")) == b"\x6a\x82"


def test_a_provisioned_card_gives_a_fresh_sun_url_per_tap(reader: EmulatedReader) -> None:
    reader.present(bolt_card())
    urls = []
    for _ in range(2):
        link = reader.wait_for_card(1.0)
        assert link is not None
        urls.append(drive(read_sun_url(), link.transceive))
        link.close()
    assert all(u.startswith("lnurlw://card.example.com/ln?p=") for u in urls)
    assert urls[0] != urls[1]  # the SDM read counter moved, so p and c changed


def test_removal_kills_the_link_even_after_a_new_card(reader: EmulatedReader) -> None:
    reader.present(EmulatedCard.factory(UID))
    link = reader.wait_for_card(1.0)
    assert link is not None
    reader.remove()
    assert reader.wait_for_removal(0.0) is True
    with pytest.raises(CardRemoved):
        link.transceive(SELECT_NDEF_APP)
    reader.present(EmulatedCard.factory(UID))
    with pytest.raises(CardRemoved):
        link.transceive(SELECT_NDEF_APP)


def test_removal_forgets_the_selection(reader: EmulatedReader) -> None:
    card = EmulatedCard.factory(UID)
    reader.present(card)
    link = reader.wait_for_card(1.0)
    assert link is not None
    assert link.transceive(SELECT_NDEF_APP) == b"\x90\x00"
    reader.remove()
    reader.present(card)
    link = reader.wait_for_card(1.0)
    assert link is not None
    # ISOSelectFile of the NDEF file needs the application selected first
    assert link.transceive(bytes.fromhex("00A4000C02E104")) != b"\x90\x00"


def test_card_stays_until_removed(reader: EmulatedReader) -> None:
    reader.present(EmulatedCard.factory(UID))
    assert reader.wait_for_removal(0.01) is False


def test_feedback_goes_to_the_card_like_an_acr122u(reader: EmulatedReader) -> None:
    card = EmulatedCard.factory(UID)
    reader.present(card)
    reader.feedback(True)
    assert card.last_feedback is not None
    assert card.last_feedback.led_state & 0x80  # green blinking (ACR122U P2 bit 7)
    reader.feedback(False)
    assert card.last_feedback.led_state & 0x40  # red blinking (P2 bit 6)
    assert reader.feedback_log == [True, False]


def test_feedback_without_card_is_recorded_only(reader: EmulatedReader) -> None:
    reader.feedback(False)
    assert reader.feedback_log == [False]
