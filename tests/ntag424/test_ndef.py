"""NDEF URI record and Bolt Card SDM offsets (NFC Forum T4T / URI RTD; AN12196 Tables 18-19)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from published import BY_ID

from station.ntag424.errors import ProtocolError, UsageError
from station.ntag424.ndef import (
    URI_PREFIXES,
    bolt_card_layout,
    bolt_card_template,
    message_from_file,
    ndef_file,
    parse_uri_record,
    uri_record,
    url_from_file,
)

h = bytes.fromhex
ZP, ZC = "0" * 32, "0" * 16


def test_nxp_ndef_file_and_offsets() -> None:
    """Table 18 writes this NDEF file; Table 19 mirrors e= at 0x20 and the MAC at 0x43."""
    t18 = h(BY_ID["an12196-t18-writedata-ndef-full"]["inputs"]["cmd_data"])
    layout = bolt_card_layout(f"https://choose.url.com/ntag424?e={ZP}&c={ZC}", picc_param="e")
    assert t18.startswith(layout.file_data)
    assert not any(t18[len(layout.file_data) :])
    assert layout.picc_data_offset == 0x20
    assert layout.mac_offset == 0x43
    t19 = h(BY_ID["an12196-t19-changefilesettings"]["inputs"]["cmd_data"])
    assert t19[6:9] == (0x20).to_bytes(3, "little")
    assert t19[9:12] == t19[12:15] == (0x43).to_bytes(3, "little")


def test_bolt_card_lnurlw_layout_counts_from_nlen() -> None:
    layout = bolt_card_layout(bolt_card_template("lnurlw://card.example.com/ln"))
    data = layout.file_data
    # NLEN(2) + D1 01 len 'U' (4) + code 00 (1) = 7 bytes before the URL text.
    assert data[:2] == len(data[2:]).to_bytes(2, "big")
    assert data[2:7] == bytes([0xD1, 0x01, len(data) - 6, ord("U"), 0x00])
    url_start = 7
    assert layout.picc_data_offset == url_start + len("lnurlw://card.example.com/ln?p=")
    assert layout.mac_offset == layout.picc_data_offset + 32 + len("&c=")
    assert data[layout.mac_offset :] == ZC.encode()


def test_template_with_existing_query() -> None:
    assert bolt_card_template("lnurlw://h/p?x=1") == f"lnurlw://h/p?x=1&p={ZP}&c={ZC}"


@pytest.mark.parametrize(
    "bad",
    [
        "lnurlw://h/p",
        f"lnurlw://h/p?p={ZP}",
        f"lnurlw://h/p?c={ZC}&p={ZP}",
        f"lnurlw://h/p?p={ZP}1&c={ZC}",  # placeholder too long
        f"lnurlw://h/p?xp={ZP}&c={ZC}",  # not a whole parameter name
    ],
)
def test_bad_templates_are_refused(bad: str) -> None:
    with pytest.raises(UsageError):
        bolt_card_layout(bad)


def test_too_long_url_is_refused() -> None:
    with pytest.raises(UsageError, match="256"):
        bolt_card_layout(bolt_card_template("lnurlw://" + "a" * 200))


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("https://www.nxp.com/", 0x02),
        ("https://nxp.com/", 0x04),
        ("http://x", 0x03),
        ("lnurlw://x", 0x00),
        ("urn:nfc:ext", 0x23),
        ("urn:x", 0x13),
    ],
)
def test_uri_identifier_codes(url: str, code: int) -> None:
    record = uri_record(url)
    assert record[4] == code
    assert parse_uri_record(record) == url


@given(st.text(min_size=1, max_size=240).filter(lambda s: len(s.encode()) <= 240))
def test_uri_round_trip(url: str) -> None:
    assert url_from_file(ndef_file(uri_record(url)) + bytes(8)) == url


def test_long_record_form_parses() -> None:
    payload = b"\x04" + b"a" * 300
    rec = bytes([0xC1, 0x01]) + len(payload).to_bytes(4, "big") + b"U" + payload
    assert parse_uri_record(rec) == "https://" + "a" * 300


@pytest.mark.parametrize(
    "data",
    [
        h("0000") + bytes(10),  # NLEN 0: empty
        h("0040") + bytes(10),  # NLEN past the data
        h("00"),
    ],
)
def test_bad_files_are_protocol_errors(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        message_from_file(data)


@pytest.mark.parametrize(
    "message",
    [
        h("D1010354"),  # truncated
        h("D10102540041"),  # 'T' record, not 'U'
        h("D20102550041"),  # TNF 2 (media type)
        h("D1010255FF41"),  # reserved identifier code
        h("D101035500FFFE"),  # not UTF-8
    ],
)
def test_bad_records_are_protocol_errors(message: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_uri_record(message)


def test_prefix_table_size() -> None:
    assert len(URI_PREFIXES) == 0x24
