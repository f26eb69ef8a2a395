"""The nfcpy backend against stock nfcpy's udp radio, with our ISO 14443-4 card on the far end.

The reader side is unmodified nfcpy (sense, RATS, Type4ATag, ISO-DEP initiator); the card side
is station.emulator.bridges.nfc_udp. Both speak on 127.0.0.1 only.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from station.emulator.bridges.nfc_udp import DEFAULT_ATS, IsoDepCard, NfcUdpCard
from station.ntag424.flows import drive, read_sun_url
from station.readers.base import CardLink, CardRemoved, Reader, ReaderUnavailable
from station.readers.nfcpy_reader import NfcpyReader

from .fakes import NDEF_AID, StubCard, bolt_card

pytest.importorskip("nfc")

SELECT_NDEF_APP = bytes.fromhex("00A4040007") + NDEF_AID + b"\x00"
GET_UID = bytes.fromhex("FFCA000000")


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def port() -> int:
    return _free_udp_port()


@pytest.fixture
def card() -> StubCard:
    return StubCard(uid=bytes.fromhex("04AABBCCDDEE80"))


@pytest.fixture
def served(port: int, card: StubCard) -> Iterator[NfcUdpCard]:
    server = NfcUdpCard(card, port=port)
    yield server
    server.remove()


@pytest.fixture
def reader(port: int) -> Iterator[NfcpyReader]:
    r = NfcpyReader(f"udp:127.0.0.1:{port}")
    yield r
    r.close()


def test_satisfies_the_seam(reader: NfcpyReader) -> None:
    assert isinstance(reader, Reader)
    assert reader.backend == "nfcpy"


def test_activation_and_apdus(reader: NfcpyReader, served: NfcUdpCard, card: StubCard) -> None:
    served.insert()
    link = reader.wait_for_card(10.0)
    assert isinstance(link, CardLink)
    assert served.activations == 1
    assert link.transceive(GET_UID) == card.uid + b"\x90\x00"
    assert link.transceive(SELECT_NDEF_APP) == b"\x90\x00"
    assert card.apdus == [GET_UID, SELECT_NDEF_APP]


def test_long_answers_and_long_commands_survive_chaining(
    reader: NfcpyReader, served: NfcUdpCard, card: StubCard
) -> None:
    served.insert()
    link = reader.wait_for_card(10.0)
    assert link is not None
    link.transceive(SELECT_NDEF_APP)
    # 258 bytes back: more than one frame at FSD 256, so the card chains its answer
    assert link.transceive(bytes.fromhex("00B0000000")) == bytes(range(256)) + b"\x90\x00"
    # 260 bytes out: more than one frame at the ATS's FSC 128, so nfcpy chains the command
    update = bytes.fromhex("00D60000FF") + bytes(range(255))
    link.transceive(update)
    assert card.apdus[-1] == update


def test_a_bolt_card_tap_over_nfcpy(reader: NfcpyReader, served: NfcUdpCard) -> None:
    served.insert(bolt_card())
    link = reader.wait_for_card(10.0)
    assert link is not None
    url = drive(read_sun_url(), link.transceive)
    assert url.startswith("lnurlw://card.example.com/ln?p=")


def test_removal_mid_exchange(reader: NfcpyReader, served: NfcUdpCard) -> None:
    served.insert()
    link = reader.wait_for_card(10.0)
    assert link is not None
    assert reader.wait_for_removal(0.1) is False
    served.remove()
    with pytest.raises(CardRemoved):
        link.transceive(GET_UID)
    assert reader.wait_for_removal(5.0) is True


def test_card_comes_back_after_removal(
    reader: NfcpyReader, served: NfcUdpCard, card: StubCard
) -> None:
    served.insert()
    assert reader.wait_for_card(10.0) is not None
    served.remove()
    assert reader.wait_for_removal(5.0) is True
    served.insert()
    link = reader.wait_for_card(10.0)
    assert link is not None
    assert link.transceive(GET_UID) == card.uid + b"\x90\x00"
    assert served.activations == 2


def test_empty_field_means_no_card(reader: NfcpyReader) -> None:
    assert reader.wait_for_card(0.0) is None


def test_missing_usb_reader_is_unavailable() -> None:
    r = NfcpyReader("usb:ffff:ffff")
    with pytest.raises(ReaderUnavailable):
        r.wait_for_card(0.0)


# --- the PICC state machine, frame by frame (ISO/IEC 14443-4 §7.5.4 rules) -----------------


def _activated(card: StubCard) -> IsoDepCard:
    picc = IsoDepCard(card)
    assert picc.rats(bytes.fromhex("E080")) == DEFAULT_ATS
    return picc


def test_rats_is_the_only_way_in(card: StubCard) -> None:
    picc = IsoDepCard(card)
    assert picc.rats(bytes.fromhex("3000")) is None  # a Type 2 READ is not for us
    assert not picc.active


def test_presence_check_gets_an_ack_with_the_card_block_number(card: StubCard) -> None:
    picc = _activated(card)
    assert picc.frame(bytes.fromhex("B2")) == bytes.fromhex("A3")  # block number starts at 1
    answer = picc.frame(bytes.fromhex("02") + GET_UID)
    assert answer == bytes.fromhex("02") + card.uid + b"\x90\x00"
    assert picc.frame(bytes.fromhex("B3")) == bytes.fromhex("A2")


def test_nak_with_the_current_number_repeats_the_last_block(card: StubCard) -> None:
    picc = _activated(card)
    answer = picc.frame(bytes.fromhex("02") + GET_UID)
    assert picc.frame(bytes.fromhex("B2")) == answer  # the PCD lost our answer
    assert card.apdus == [GET_UID]  # ... and the card did not run the command twice


def test_chained_command_is_acked_then_assembled(card: StubCard) -> None:
    picc = _activated(card)
    assert picc.frame(bytes.fromhex("12") + GET_UID[:2]) == bytes.fromhex("A2")
    assert picc.frame(bytes.fromhex("03") + GET_UID[2:]) == bytes.fromhex("03") + card.uid + (
        b"\x90\x00"
    )
    assert card.apdus == [GET_UID]


def test_deselect_answers_and_resets_the_card(card: StubCard) -> None:
    picc = _activated(card)
    picc.frame(bytes.fromhex("02") + SELECT_NDEF_APP)
    assert card.selected
    assert picc.frame(bytes.fromhex("C2")) == bytes.fromhex("C2")
    assert not picc.active and not card.selected
