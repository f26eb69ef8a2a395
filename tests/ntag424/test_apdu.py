"""APDU envelopes and status-word mapping (datasheet §10.1-§10.2, AN12196 §5)."""

from __future__ import annotations

import pytest

from station.ntag424 import errors
from station.ntag424.apdu import Response, iso, native, parse_iso, parse_native, u24

h = bytes.fromhex


def test_native_command_is_iso_wrapped() -> None:
    # AN12196 Table 14: AuthenticateEV2First key 0, LenCap 0.
    assert native(0x71, h("0000")) == h("9071000002000000")
    # No data: no Lc, only Le.
    assert native(0x60) == h("9060000000")


def test_native_refuses_what_a_short_apdu_cannot_carry() -> None:
    with pytest.raises(errors.UsageError):
        native(0x8D, bytes(256))
    with pytest.raises(errors.UsageError):
        native(0x100)


def test_iso_cases() -> None:
    assert iso(0xA4, 0x04, 0x0C, h("D2760000850101"), le=0) == h("00A4040C07D276000085010100")
    assert iso(0xB0, 0x00, 0x00, le=0) == h("00B0000000")
    assert iso(0xD6, 0x00, 0x02, h("AABB")) == h("00D6000202AABB")
    with pytest.raises(errors.UsageError):
        iso(0xB0, 0, 0, le=256)


def test_response_split() -> None:
    r = Response.parse(h("01029100"))
    assert (r.data, r.sw, r.sw1, r.sw2) == (h("0102"), 0x9100, 0x91, 0x00)
    with pytest.raises(errors.ProtocolError):
        Response.parse(h("91"))


def test_native_success_and_more_frames() -> None:
    assert parse_native(h("AA9100"), "X").data == h("AA")
    with pytest.raises(errors.CardError):
        parse_native(h("AA91AF"), "X")
    assert parse_native(h("AA91AF"), "X", more=True).sw == 0x91AF
    assert parse_iso(h("9000"), "X").data == b""
    with pytest.raises(errors.CardError):
        parse_iso(h("9100"), "X")


@pytest.mark.parametrize(
    ("sw", "cls"),
    [
        ("91AE", errors.AuthenticationError),
        ("919D", errors.PermissionDenied),
        ("917E", errors.LengthError),
        ("91AD", errors.AuthenticationDelay),
        ("919E", errors.ParameterError),
        ("9140", errors.NoSuchKey),
        ("911E", errors.IntegrityError),
        ("91BE", errors.BoundaryError),
        ("91CA", errors.CommandAborted),
        ("911C", errors.IllegalCommand),
        ("91F0", errors.FileNotFound),
        ("91EE", errors.MemoryError_),
    ],
)
def test_native_status_words_raise_their_error(sw: str, cls: type[errors.CardError]) -> None:
    with pytest.raises(cls) as info:
        parse_native(h(sw), "ChangeKey")
    assert info.value.sw == int(sw, 16)
    assert "ChangeKey" in str(info.value)


@pytest.mark.parametrize(
    ("sw", "cls"),
    [
        ("6A82", errors.FileNotFound),
        ("6982", errors.SecurityNotSatisfied),
        ("6700", errors.WrongLength),
        ("6A86", errors.WrongParameters),
        ("6D00", errors.InstructionNotSupported),
    ],
)
def test_iso_status_words_raise_their_error(sw: str, cls: type[errors.CardError]) -> None:
    with pytest.raises(cls):
        parse_iso(h(sw), "ISOSelectFile")


def test_unknown_status_is_still_a_card_error() -> None:
    with pytest.raises(errors.CardError) as info:
        parse_native(h("9177"), "X")
    assert type(info.value) is errors.CardError


def test_u24_little_endian() -> None:
    assert u24(0x43) == h("430000")
    assert u24(0x123456) == h("563412")
    with pytest.raises(errors.UsageError):
        u24(1 << 24)
