"""File settings of an NTAG 424 DNA standard data file: parse, build, check — a shared data type.

One encoding is used in two places, so it lives here once:

* the answer to GetFileSettings (``FileType || FileOption || AccessRights || FileSize || SDM…``),
* the data of ChangeFileSettings (``FileOption || AccessRights || SDM…``: no type, no size).

Layout (NT4H2421Gx datasheet §10.7.1 ChangeFileSettings, §10.7.2 GetFileSettings, §8.2.3.3
access rights; verified against AN12196 Table 8 and Table 19):

* FileOption: bit 6 = SDM and mirroring enabled, bits 1..0 = CommMode (00 plain, 01 MAC, 11 full).
* AccessRights, two bytes on the wire: ``(RW << 4 | Change), (Read << 4 | Write)``. Each nibble is a
  key number 0..4, ``E`` = free access, ``F`` = no access. Factory NDEF file: ``E0 EE``.
* SDMOptions: bit 7 UID mirror, bit 6 SDMReadCtr mirror, bit 5 SDMReadCtrLimit, bit 4
  SDMENCFileData, bit 0 ASCII encoding (the only encoding NTAG 424 DNA supports).
* SDMAccessRights, two bytes on the wire: ``(RFU=F << 4 | SDMCtrRet), (SDMMetaRead << 4 |
  SDMFileRead)``. AN12196 Table 19 writes ``F121``: CtrRet 1, MetaRead 2, FileRead 1.
* Then 3-byte little-endian offsets, each present only when the options call for it, in this
  order: UIDOffset, SDMReadCtrOffset (both only when MetaRead = E, plain mirroring),
  PICCDataOffset (MetaRead = a key), SDMMACInputOffset, SDMENCOffset, SDMENCLength (with
  SDMENCFileData), SDMMACOffset (these four when FileRead ≠ F), SDMReadCtrLimit.

Why a strict builder: a wrong offset is not an error the card reports well (it answers 919E or,
worse, mirrors into the wrong bytes), so :meth:`SdmSettings.validate` catches it first.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from station.ntag424.errors import ProtocolError, UsageError

FREE: Final = 0xE
"""Access condition nibble: free access, no authentication needed."""
NEVER: Final = 0xF
"""Access condition nibble: no access at all."""

_OPT_SDM: Final = 0x40
_OPT_COMM_MASK: Final = 0x03

_SDM_UID: Final = 0x80
_SDM_CTR: Final = 0x40
_SDM_CTR_LIMIT: Final = 0x20
_SDM_ENC_FILE: Final = 0x10
_SDM_ASCII: Final = 0x01
_SDM_RFU: Final = 0x0E


class CommMode(IntEnum):
    """How a file's data travels when authenticated (datasheet §8.2.3.2, Table 7)."""

    PLAIN = 0x00
    MAC = 0x01
    FULL = 0x03


class FileType(IntEnum):
    STANDARD_DATA = 0x00


def _check_nibble(name: str, value: int) -> None:
    if not 0 <= value <= 0xF:
        raise UsageError(f"{name} must be a key number 0..4, 0xE (free) or 0xF (never)")
    if 5 <= value <= 0xD:
        raise UsageError(f"{name}={value:X}: NTAG 424 DNA has keys 0..4 only (E free, F never)")


def _u24(value: int) -> bytes:
    if not 0 <= value < 1 << 24:
        raise UsageError(f"offset/length {value} does not fit in 3 bytes")
    return value.to_bytes(3, "little")


@dataclass(frozen=True)
class AccessRights:
    """Key number (0..4), :data:`FREE` or :data:`NEVER` for each kind of access."""

    read: int = FREE
    write: int = FREE
    read_write: int = FREE
    change: int = 0

    def __post_init__(self) -> None:
        for name in ("read", "write", "read_write", "change"):
            _check_nibble(name, getattr(self, name))

    def to_bytes(self) -> bytes:
        return bytes([(self.read_write << 4) | self.change, (self.read << 4) | self.write])

    @classmethod
    def from_bytes(cls, data: bytes) -> AccessRights:
        if len(data) != 2:
            raise ProtocolError("access rights are 2 bytes")
        try:
            return cls(
                read=data[1] >> 4,
                write=data[1] & 0xF,
                read_write=data[0] >> 4,
                change=data[0] & 0xF,
            )
        except UsageError as exc:
            raise ProtocolError(f"card reported impossible access rights: {exc}") from exc


@dataclass(frozen=True)
class SdmSettings:
    """Secure Dynamic Messaging settings of one file (datasheet §9.3, §10.7.1).

    Offsets count bytes from the start of the file (the NDEF file includes its 2-byte NLEN).
    ``None`` means "not present"; :meth:`validate` says which must be present.
    """

    uid_mirror: bool = True
    read_ctr_mirror: bool = True
    read_ctr_limit_enabled: bool = False
    enc_file_data: bool = False
    ascii_encoding: bool = True
    ctr_ret: int = NEVER
    meta_read: int = NEVER
    file_read: int = NEVER
    uid_offset: int | None = None
    read_ctr_offset: int | None = None
    picc_data_offset: int | None = None
    mac_input_offset: int | None = None
    enc_offset: int | None = None
    enc_length: int | None = None
    mac_offset: int | None = None
    read_ctr_limit: int | None = None

    # -- which fields the options require -------------------------------------------------
    @property
    def plain_uid(self) -> bool:
        return self.uid_mirror and self.meta_read == FREE

    @property
    def plain_ctr(self) -> bool:
        return self.read_ctr_mirror and self.meta_read == FREE

    @property
    def encrypted_picc(self) -> bool:
        return self.meta_read <= 4

    @property
    def mac(self) -> bool:
        return self.file_read != NEVER

    def _expected(self) -> dict[str, bool]:
        return {
            "uid_offset": self.plain_uid,
            "read_ctr_offset": self.plain_ctr,
            "picc_data_offset": self.encrypted_picc,
            "mac_input_offset": self.mac,
            "enc_offset": self.mac and self.enc_file_data,
            "enc_length": self.mac and self.enc_file_data,
            "mac_offset": self.mac,
            "read_ctr_limit": self.read_ctr_limit_enabled,
        }

    def validate(self) -> None:
        """Raise :class:`UsageError` when options and offsets disagree (datasheet §10.7.1)."""
        for name in ("ctr_ret", "meta_read", "file_read"):
            _check_nibble(name, getattr(self, name))
        if not self.ascii_encoding:
            raise UsageError("NTAG 424 DNA mirrors in ASCII only; set ascii_encoding=True")
        if self.encrypted_picc and not (self.uid_mirror or self.read_ctr_mirror):
            raise UsageError("encrypted PICC data needs the UID and/or the counter mirrored")
        if self.enc_file_data and not (self.mac and self.uid_mirror and self.read_ctr_mirror):
            raise UsageError("SDMENCFileData needs SDMFileRead set and UID + counter mirrored")
        for name, wanted in self._expected().items():
            present = getattr(self, name) is not None
            if wanted and not present:
                raise UsageError(f"SDM options require {name}")
            if present and not wanted:
                raise UsageError(f"{name} given, but the SDM options do not use it")
        if self.mac:
            assert self.mac_input_offset is not None and self.mac_offset is not None
            if self.mac_input_offset > self.mac_offset:
                raise UsageError("SDMMACInputOffset must not be after SDMMACOffset")
        if self.enc_length is not None and (self.enc_length < 32 or self.enc_length % 32):
            raise UsageError("SDMENCLength must be a non-zero multiple of 32 (16 bytes as hex)")

    @property
    def options_byte(self) -> int:
        return (
            (_SDM_UID if self.uid_mirror else 0)
            | (_SDM_CTR if self.read_ctr_mirror else 0)
            | (_SDM_CTR_LIMIT if self.read_ctr_limit_enabled else 0)
            | (_SDM_ENC_FILE if self.enc_file_data else 0)
            | (_SDM_ASCII if self.ascii_encoding else 0)
        )

    def access_bytes(self) -> bytes:
        return bytes([(NEVER << 4) | self.ctr_ret, (self.meta_read << 4) | self.file_read])

    def to_bytes(self) -> bytes:
        """SDMOptions || SDMAccessRights || present offsets, as ChangeFileSettings sends them."""
        self.validate()
        out = bytes([self.options_byte]) + self.access_bytes()
        for name in self._expected():
            value = getattr(self, name)
            if value is not None:
                out += _u24(value)
        return out

    @classmethod
    def parse(cls, data: bytes) -> tuple[SdmSettings, int]:
        """Parse from the SDMOptions byte on; return the settings and the bytes consumed."""
        if len(data) < 3:
            raise ProtocolError("SDM settings truncated")
        opts = data[0]
        if opts & _SDM_RFU:
            raise ProtocolError(f"SDMOptions {opts:02X} has RFU bits set")
        base = cls(
            uid_mirror=bool(opts & _SDM_UID),
            read_ctr_mirror=bool(opts & _SDM_CTR),
            read_ctr_limit_enabled=bool(opts & _SDM_CTR_LIMIT),
            enc_file_data=bool(opts & _SDM_ENC_FILE),
            ascii_encoding=bool(opts & _SDM_ASCII),
            ctr_ret=data[1] & 0xF,
            meta_read=data[2] >> 4,
            file_read=data[2] & 0xF,
        )
        pos = 3
        values: dict[str, int] = {}
        for name, wanted in base._expected().items():
            if wanted:
                if pos + 3 > len(data):
                    raise ProtocolError(f"SDM settings truncated before {name}")
                values[name] = int.from_bytes(data[pos : pos + 3], "little")
                pos += 3
        settings = cls(**{**base.__dict__, **values})
        try:
            settings.validate()
        except UsageError as exc:
            raise ProtocolError(f"card reported inconsistent SDM settings: {exc}") from exc
        return settings, pos


@dataclass(frozen=True)
class FileSettings:
    """Settings of one file. ``size`` and ``file_type`` only come from GetFileSettings."""

    comm_mode: CommMode = CommMode.PLAIN
    access: AccessRights = AccessRights()
    sdm: SdmSettings | None = None
    size: int | None = None
    file_type: int = FileType.STANDARD_DATA

    @property
    def file_option(self) -> int:
        return (_OPT_SDM if self.sdm is not None else 0) | int(self.comm_mode)

    def change_payload(self) -> bytes:
        """The ChangeFileSettings data after FileNo (it is encrypted in CommMode.FULL)."""
        out = bytes([self.file_option]) + self.access.to_bytes()
        if self.sdm is not None:
            out += self.sdm.to_bytes()
        return out

    def to_bytes(self) -> bytes:
        """The GetFileSettings answer encoding (used by the emulated card)."""
        if self.size is None:
            raise UsageError("GetFileSettings encoding needs the file size")
        out = bytes([self.file_type, self.file_option]) + self.access.to_bytes()
        out += _u24(self.size)
        if self.sdm is not None:
            out += self.sdm.to_bytes()
        return out

    @classmethod
    def parse(cls, data: bytes) -> FileSettings:
        """Parse a GetFileSettings answer (data only: no status word, no MAC)."""
        if len(data) < 7:
            raise ProtocolError(f"file settings are at least 7 bytes, got {len(data)}")
        option = data[1]
        if option & ~(_OPT_SDM | _OPT_COMM_MASK):
            raise ProtocolError(f"FileOption {option:02X} has RFU bits set")
        try:
            comm = CommMode(option & _OPT_COMM_MASK)
        except ValueError as exc:
            raise ProtocolError(f"FileOption {option:02X}: CommMode 10b is reserved") from exc
        sdm: SdmSettings | None = None
        end = 7
        if option & _OPT_SDM:
            sdm, used = SdmSettings.parse(data[7:])
            end += used
        if end != len(data):
            raise ProtocolError(f"{len(data) - end} unexpected bytes after the file settings")
        return cls(
            comm_mode=comm,
            access=AccessRights.from_bytes(data[2:4]),
            sdm=sdm,
            size=int.from_bytes(data[4:7], "little"),
            file_type=data[0],
        )

    @classmethod
    def parse_change_payload(cls, data: bytes) -> FileSettings:
        """Parse ChangeFileSettings data (the card side needs this; ``size`` stays ``None``)."""
        if len(data) < 3:
            raise ProtocolError("ChangeFileSettings data is at least 3 bytes")
        option = data[0]
        if option & ~(_OPT_SDM | _OPT_COMM_MASK) or option & _OPT_COMM_MASK == 2:
            raise ProtocolError(f"FileOption {option:02X} is not valid")
        sdm: SdmSettings | None = None
        end = 3
        if option & _OPT_SDM:
            sdm, used = SdmSettings.parse(data[3:])
            end += used
        if end != len(data):
            raise ProtocolError(f"{len(data) - end} unexpected bytes after the file settings")
        return cls(
            comm_mode=CommMode(option & _OPT_COMM_MASK),
            access=AccessRights.from_bytes(data[1:3]),
            sdm=sdm,
        )


# Factory settings of the three files of the NDEF application (datasheet §8.2.2 Table 5;
# observed on blank cards: file 01 "00 E0", file 02 "E0 EE", file 03 "30 23" full).
FACTORY_CC_FILE: Final = FileSettings(
    CommMode.PLAIN, AccessRights(read=FREE, write=0, read_write=0, change=0), size=32
)
FACTORY_NDEF_FILE: Final = FileSettings(
    CommMode.PLAIN, AccessRights(read=FREE, write=FREE, read_write=FREE, change=0), size=256
)
FACTORY_PROPRIETARY_FILE: Final = FileSettings(
    CommMode.FULL, AccessRights(read=2, write=3, read_write=3, change=0), size=128
)

CC_FILE_NO: Final = 0x01
NDEF_FILE_NO: Final = 0x02
PROPRIETARY_FILE_NO: Final = 0x03


def bolt_card_sdm(picc_data_offset: int, mac_offset: int) -> SdmSettings:
    """Bolt Card SUN settings: ``p`` = PICC data encrypted with key 1, ``c`` = MAC with key 2.

    MAC input offset equals the MAC offset, so the MAC covers the empty string (Bolt Card
    convention, boltcard/boltcard docs). Counter retrieval is denied (``ctr_ret`` = F).
    """
    return SdmSettings(
        uid_mirror=True,
        read_ctr_mirror=True,
        ctr_ret=NEVER,
        meta_read=1,
        file_read=2,
        picc_data_offset=picc_data_offset,
        mac_input_offset=mac_offset,
        mac_offset=mac_offset,
    )


def bolt_card_ndef_settings(picc_data_offset: int, mac_offset: int) -> FileSettings:
    """NDEF file settings for a provisioned Bolt Card: read free, write/change with key 0."""
    return FileSettings(
        comm_mode=CommMode.PLAIN,
        access=AccessRights(read=FREE, write=0, read_write=0, change=0),
        sdm=bolt_card_sdm(picc_data_offset, mac_offset),
    )
