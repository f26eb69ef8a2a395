"""NTAG 424 DNA commands, one small generator flow each: ``r_apdu = yield c_apdu``.

A command flow builds its C-APDU (plain, or wrapped by a :class:`Session`), checks the status
word, verifies/decrypts through the session, and parses the answer. Multi-step procedures
(provisioning, wiping) compose these with ``yield from`` in :mod:`station.ntag424.flows`.

Communication modes (NT4H2421Gx datasheet §10, per command; AN12196 §5-§8):

=====================  =======  ===========================================================
command                INS      CommMode when authenticated (plain when not authenticated)
=====================  =======  ===========================================================
GetVersion             60 (AF)  plain here: chained 3 frames, run before authenticating
GetCardUID             51       full (authentication required)
GetKeyVersion          64       MAC
GetFileSettings        F5       MAC
ChangeFileSettings     5F       full (authentication with the file's Change key)
ChangeKey              C4       full (authentication with key 0)
ReadData / WriteData   AD / 8D  the file's CommMode
Read_Sig               3C       full
SetConfiguration       5C       full (authentication with key 0)
=====================  =======  ===========================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from station.ntag424 import crypto
from station.ntag424.apdu import (
    Flow,
    Ins,
    iso,
    native,
    parse_iso,
    parse_native,
    u24,
)
from station.ntag424.errors import ProtocolError, UsageError
from station.ntag424.filesettings import CommMode, FileSettings
from station.ntag424.session import Session

NDEF_AID: Final = bytes.fromhex("D2760000850101")
"""DF name of the NFC Forum Type 4 Tag (NDEF) application (datasheet §8.2.2)."""
CC_FILE_ID: Final = 0xE103
NDEF_FILE_ID: Final = 0xE104
PROPRIETARY_FILE_ID: Final = 0xE105

SIGNATURE_LEN: Final = 56
UID_LEN: Final = 7


def _run(
    session: Session | None,
    ins: int,
    header: bytes,
    data: bytes,
    mode: CommMode,
    command: str,
    *,
    expect_mac: bool = True,
) -> Flow[bytes]:
    """Send one native command plain (no session) or through ``session`` in ``mode``."""
    if session is None:
        r_apdu = yield native(ins, header + data)
        return parse_native(r_apdu, command).data
    r_apdu = yield session.wrap(ins, header, data, mode)
    return session.unwrap(r_apdu, mode, command, expect_mac=expect_mac)


def _need(session: Session | None, command: str) -> Session:
    if session is None or not session.active:
        raise UsageError(f"{command} needs an authenticated session")
    return session


# -- ISO/IEC 7816-4 commands ---------------------------------------------------------------


def iso_select_application(aid: bytes = NDEF_AID) -> Flow[None]:
    """ISOSelectFile by DF name: ``00 A4 04 0C 07 D2760000850101 00`` (AN12196 Table 22).

    Selecting ends any authenticated session on the card.
    """
    r_apdu = yield iso(Ins.ISO_SELECT_FILE, 0x04, 0x0C, aid, le=0)
    parse_iso(r_apdu, "ISOSelectFile(application)")


def iso_select_file(file_id: int) -> Flow[None]:
    """ISOSelectFile by EF id (E103 CC, E104 NDEF, E105 proprietary): ``00 A4 00 0C 02 id 00``."""
    if not 0 <= file_id <= 0xFFFF:
        raise UsageError("ISO file identifiers are 2 bytes")
    r_apdu = yield iso(Ins.ISO_SELECT_FILE, 0x00, 0x0C, file_id.to_bytes(2, "big"), le=0)
    parse_iso(r_apdu, f"ISOSelectFile({file_id:04X})")


def iso_read_binary(offset: int = 0, le: int = 0) -> Flow[bytes]:
    """ISOReadBinary of the selected EF; ``le=0`` asks for up to 256 bytes (to end of file)."""
    if not 0 <= offset <= 0x7FFF:
        raise UsageError("ISOReadBinary offsets are 15 bits (P1 bit 7 must be 0)")
    r_apdu = yield iso(Ins.ISO_READ_BINARY, offset >> 8, offset & 0xFF, le=le)
    data = parse_iso(r_apdu, "ISOReadBinary").data
    if le and len(data) > le:
        raise ProtocolError(f"ISOReadBinary returned {len(data)} bytes for Le={le}")
    return data


def iso_update_binary(offset: int, data: bytes) -> Flow[None]:
    """ISOUpdateBinary of the selected EF (plain; free-write files only)."""
    if not 0 <= offset <= 0x7FFF:
        raise UsageError("ISOUpdateBinary offsets are 15 bits (P1 bit 7 must be 0)")
    if not data:
        raise UsageError("nothing to write")
    r_apdu = yield iso(Ins.ISO_UPDATE_BINARY, offset >> 8, offset & 0xFF, data)
    parse_iso(r_apdu, "ISOUpdateBinary")


# -- GetVersion ----------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionInfo:
    """The three GetVersion frames (datasheet §10.5.2)."""

    hw: bytes
    sw: bytes
    uid: bytes
    batch: bytes
    production_week: int  # calendar week, decoded from BCD (low 7 bits; bit 7 is FabKey)
    production_year: int  # four-digit year, decoded from BCD
    fab_key_id: int | None

    @property
    def vendor_id(self) -> int:
        return self.hw[0]

    @property
    def hw_type(self) -> int:
        return self.hw[1]

    @property
    def hw_version(self) -> tuple[int, int]:
        return self.hw[3], self.hw[4]

    @property
    def sw_version(self) -> tuple[int, int]:
        return self.sw[3], self.sw[4]

    @property
    def storage_size_byte(self) -> int:
        return self.hw[5]

    @property
    def looks_like_ntag424_dna(self) -> bool:
        """NXP (04), HW type 04 (NTAG), storage code 11 (416 bytes), HW major 0x30."""
        return (
            self.vendor_id == 0x04
            and self.hw_type == 0x04
            and self.storage_size_byte == 0x11
            and self.hw[3] == 0x30
        )

    @property
    def random_uid(self) -> bool:
        """With random ID enabled (SetConfiguration), GetVersion hides the UID (all zero)."""
        return self.uid == bytes(UID_LEN)


def _bcd(value: int) -> int:
    """GetVersion's CWProd and YearProd are BCD coded (datasheet §10.5.2: week 01h..52h)."""
    return (value >> 4) * 10 + (value & 0x0F)


def parse_version(frames: tuple[bytes, bytes, bytes]) -> VersionInfo:
    hw, sw, part3 = frames
    if len(hw) != 7 or len(sw) != 7 or len(part3) not in (14, 15):
        raise ProtocolError("GetVersion frames must be 7, 7 and 14/15 bytes")
    return VersionInfo(
        hw=hw,
        sw=sw,
        uid=part3[0:7],
        batch=part3[7:12],
        production_week=_bcd(part3[12] & 0x7F),
        production_year=2000 + _bcd(part3[13]),
        fab_key_id=part3[14] if len(part3) == 15 else None,
    )


def get_version() -> Flow[VersionInfo]:
    """GetVersion: ``90 60 00 00 00``, then ``90 AF 00 00 00`` twice (``91 AF`` chaining)."""
    r1 = yield native(Ins.GET_VERSION)
    f1 = parse_native(r1, "GetVersion", more=True)
    if f1.sw != 0x91AF:
        raise ProtocolError("GetVersion: the card did not chain to a second frame")
    r2 = yield native(Ins.ADDITIONAL_FRAME)
    f2 = parse_native(r2, "GetVersion", more=True)
    if f2.sw != 0x91AF:
        raise ProtocolError("GetVersion: the card did not chain to a third frame")
    r3 = yield native(Ins.ADDITIONAL_FRAME)
    f3 = parse_native(r3, "GetVersion")
    return parse_version((f1.data, f2.data, f3.data))


# -- Authenticated information ------------------------------------------------------------


def get_card_uid(session: Session) -> Flow[bytes]:
    """GetCardUID (full): the real 7-byte UID, even with random ID on (AN12196 Table 29)."""
    s = _need(session, "GetCardUID")
    uid = yield from _run(s, Ins.GET_CARD_UID, b"", b"", CommMode.FULL, "GetCardUID")
    if len(uid) != UID_LEN:
        raise ProtocolError(f"GetCardUID returned {len(uid)} bytes, expected 7")
    return uid


def get_key_version(key_no: int, session: Session | None = None) -> Flow[int]:
    """GetKeyVersion: ``90 64 00 00 01 KeyNo 00``; MAC-protected when authenticated."""
    if not 0 <= key_no <= 4:
        raise UsageError("key numbers are 0..4")
    data = yield from _run(
        session, Ins.GET_KEY_VERSION, bytes([key_no]), b"", CommMode.MAC, "GetKeyVersion"
    )
    if len(data) != 1:
        raise ProtocolError(f"GetKeyVersion returned {len(data)} bytes, expected 1")
    return data[0]


def get_file_settings(file_no: int, session: Session | None = None) -> Flow[FileSettings]:
    """GetFileSettings: ``90 F5 00 00 01 FileNo 00``; MAC-protected when authenticated."""
    data = yield from _run(
        session, Ins.GET_FILE_SETTINGS, bytes([file_no]), b"", CommMode.MAC, "GetFileSettings"
    )
    return FileSettings.parse(data)


def change_file_settings(session: Session, file_no: int, settings: FileSettings) -> Flow[None]:
    """ChangeFileSettings (full): FileNo plain in the header, settings encrypted (Table 19)."""
    s = _need(session, "ChangeFileSettings")
    yield from _run(
        s,
        Ins.CHANGE_FILE_SETTINGS,
        bytes([file_no]),
        settings.change_payload(),
        CommMode.FULL,
        "ChangeFileSettings",
    )


def change_key_data(
    session_key_no: int,
    key_no: int,
    new_key: bytes,
    version: int,
    old_key: bytes | None,
) -> bytes:
    """The plain ChangeKey data (before padding/encryption), AN12196 §6.16.

    Authenticated key: ``New || KeyVer``. Any other key: ``(New xor Old) || KeyVer ||
    CRC32NK(New)``, so the card can check the caller knew the old key.
    """
    if len(new_key) != 16:
        raise UsageError("new key must be 16 bytes")
    if not 0 <= version <= 0xFF:
        raise UsageError("key version is one byte")
    if key_no == session_key_no:
        return new_key + bytes([version])
    if old_key is None or len(old_key) != 16:
        raise UsageError(f"changing key {key_no} needs its current (old) 16-byte value")
    return crypto.xor(new_key, old_key) + bytes([version]) + crypto.crc32nk(new_key)


def change_key(
    session: Session,
    key_no: int,
    new_key: bytes,
    version: int,
    old_key: bytes | None = None,
) -> Flow[None]:
    """ChangeKey (full, authenticated with key 0).

    Changing the authenticated key itself: the card answers a bare ``91 00`` without a MAC and
    the session ends (AN12196 Table 27); authenticate again with the new key.
    """
    s = _need(session, "ChangeKey")
    if not 0 <= key_no <= 4:
        raise UsageError("key numbers are 0..4")
    if s.key_no != 0:
        raise UsageError("ChangeKey needs authentication with key 0 (AppMasterKey)")
    own = key_no == s.key_no
    data = change_key_data(s.key_no, key_no, new_key, version, old_key)
    yield from _run(
        s, Ins.CHANGE_KEY, bytes([key_no]), data, CommMode.FULL, "ChangeKey", expect_mac=not own
    )
    if own:
        s.end()


# -- Data ----------------------------------------------------------------------------------


def read_data(
    file_no: int,
    offset: int,
    length: int,
    mode: CommMode = CommMode.PLAIN,
    session: Session | None = None,
) -> Flow[bytes]:
    """ReadData: header ``FileNo || Offset(3) || Length(3)``; ``length=0`` = to end of file."""
    header = bytes([file_no]) + u24(offset) + u24(length)
    data = yield from _run(session, Ins.READ_DATA, header, b"", mode, "ReadData")
    if length and len(data) != length:
        raise ProtocolError(f"ReadData returned {len(data)} bytes, asked for {length}")
    return data


MAX_WRITE_CHUNK: Final = 128
"""Bytes per WriteData: fits a short APDU in every CommMode (128 + 16 pad + 8 MAC + 7 header)."""


def write_data(
    file_no: int,
    offset: int,
    data: bytes,
    mode: CommMode = CommMode.PLAIN,
    session: Session | None = None,
) -> Flow[None]:
    """WriteData: header ``FileNo || Offset(3) || Length(3)``, data in the file's CommMode.

    Longer data is split into several WriteData commands of at most :data:`MAX_WRITE_CHUNK`.
    """
    if not data:
        raise UsageError("nothing to write")
    for start in range(0, len(data), MAX_WRITE_CHUNK):
        chunk = data[start : start + MAX_WRITE_CHUNK]
        header = bytes([file_no]) + u24(offset + start) + u24(len(chunk))
        yield from _run(session, Ins.WRITE_DATA, header, chunk, mode, "WriteData")


def read_sig(session: Session | None = None) -> Flow[bytes]:
    """Read_Sig: ``90 3C 00 00 01 00 00`` → 56-byte ECDSA signature r||s (AN12196 §8.2)."""
    sig = yield from _run(session, Ins.READ_SIG, b"\x00", b"", CommMode.FULL, "Read_Sig")
    if len(sig) != SIGNATURE_LEN:
        raise ProtocolError(f"Read_Sig returned {len(sig)} bytes, expected 56")
    return sig


def set_configuration(session: Session, option: int, data: bytes) -> Flow[None]:
    """SetConfiguration (full): option byte plain in the header (AN12196 Table 28)."""
    s = _need(session, "SetConfiguration")
    yield from _run(
        s, Ins.SET_CONFIGURATION, bytes([option]), data, CommMode.FULL, "SetConfiguration"
    )
