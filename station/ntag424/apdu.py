"""C-APDU building and R-APDU parsing for NTAG 424 DNA: bytes in, bytes out.

Two envelopes exist (NT4H2421Gx datasheet §10.1, §10.2; AN12196 §5):

* native commands are ISO/IEC 7816-4 wrapped: ``90 INS 00 00 Lc data 00`` (``90 INS 00 00 00``
  without data); success is ``91 00``, "more frames follow" is ``91 AF``;
* ISO commands (``00 A4`` SelectFile, ``00 B0`` ReadBinary, ``00 D6`` UpdateBinary) use their own
  CLA/P1/P2; success is ``90 00``.

Every non-success status word becomes the matching :class:`~station.ntag424.errors.CardError`
subclass through :func:`~station.ntag424.errors.card_error`, so callers catch what they can
handle and nothing silently continues after a refusal.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Final, TypeVar

from station.ntag424.errors import ProtocolError, UsageError, card_error

T = TypeVar("T")

Flow = Generator[bytes, bytes, T]
"""A card exchange: ``r_apdu = yield c_apdu`` until it returns its result (httpx auth_flow)."""

CLA_NATIVE: Final = 0x90
CLA_ISO: Final = 0x00

SW_OK_NATIVE: Final = 0x9100
SW_MORE_FRAMES: Final = 0x91AF
SW_OK_ISO: Final = 0x9000


class Ins:
    """Instruction codes (datasheet §10, Table 22 "Command set")."""

    AUTHENTICATE_EV2_FIRST: Final = 0x71
    AUTHENTICATE_EV2_NON_FIRST: Final = 0x77
    ADDITIONAL_FRAME: Final = 0xAF
    GET_VERSION: Final = 0x60
    GET_CARD_UID: Final = 0x51
    GET_KEY_VERSION: Final = 0x64
    CHANGE_KEY: Final = 0xC4
    GET_FILE_SETTINGS: Final = 0xF5
    CHANGE_FILE_SETTINGS: Final = 0x5F
    READ_DATA: Final = 0xAD
    WRITE_DATA: Final = 0x8D
    READ_SIG: Final = 0x3C
    SET_CONFIGURATION: Final = 0x5C
    GET_FILE_COUNTERS: Final = 0xF6
    ISO_SELECT_FILE: Final = 0xA4
    ISO_READ_BINARY: Final = 0xB0
    ISO_UPDATE_BINARY: Final = 0xD6


MAX_LC: Final = 255
"""Short APDUs only: readers such as the ACR122U do not pass extended-length APDUs."""


def native(ins: int, data: bytes = b"") -> bytes:
    """``90 INS 00 00 [Lc data] 00`` — the ISO/IEC 7816-4 wrapping of a native command."""
    if not 0 <= ins <= 0xFF:
        raise UsageError("INS is one byte")
    if len(data) > MAX_LC:
        raise UsageError(f"command data is {len(data)} bytes; a short APDU carries at most 255")
    if data:
        return bytes([CLA_NATIVE, ins, 0, 0, len(data)]) + data + b"\x00"
    return bytes([CLA_NATIVE, ins, 0, 0, 0])


def iso(ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None) -> bytes:
    """An ISO/IEC 7816-4 short APDU (case 1-4). ``le=0`` means "up to 256 bytes"."""
    if len(data) > MAX_LC:
        raise UsageError(f"command data is {len(data)} bytes; a short APDU carries at most 255")
    out = bytes([CLA_ISO, ins, p1, p2])
    if data:
        out += bytes([len(data)]) + data
    if le is not None:
        if not 0 <= le <= 0xFF:
            raise UsageError("Le is one byte (0 means 256)")
        out += bytes([le])
    return out


@dataclass(frozen=True)
class Response:
    """An R-APDU split into data and status word."""

    data: bytes
    sw: int

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    @classmethod
    def parse(cls, r_apdu: bytes) -> Response:
        if len(r_apdu) < 2:
            raise ProtocolError(f"R-APDU of {len(r_apdu)} bytes has no status word")
        return cls(r_apdu[:-2], int.from_bytes(r_apdu[-2:], "big"))

    def check(self, command: str, ok: tuple[int, ...] = (SW_OK_NATIVE,)) -> Response:
        """Return ``self`` when the status word is one of ``ok``, else raise its CardError."""
        if self.sw not in ok:
            raise card_error(self.sw, command)
        return self


def parse_native(r_apdu: bytes, command: str, *, more: bool = False) -> Response:
    """Parse a native answer; ``more=True`` also accepts ``91 AF`` (additional frame)."""
    ok = (SW_OK_NATIVE, SW_MORE_FRAMES) if more else (SW_OK_NATIVE,)
    return Response.parse(r_apdu).check(command, ok)


def parse_iso(r_apdu: bytes, command: str) -> Response:
    return Response.parse(r_apdu).check(command, (SW_OK_ISO,))


def u24(value: int) -> bytes:
    """3-byte little-endian offset/length, as native commands carry them."""
    if not 0 <= value < 1 << 24:
        raise UsageError(f"{value} does not fit in 3 bytes")
    return value.to_bytes(3, "little")
