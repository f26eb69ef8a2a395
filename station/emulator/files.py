"""The emulated card's file system: three StandardData files and their settings.

This is the card's private view of file settings (how it parses ChangeFileSettings and what it
answers to GetFileSettings), written from the NT4H2421Gx datasheet independently of the
reader-side ``filesettings.py`` so that each side checks the other.

Encodings (NT4H2421Gx Rev. 3.0):

* FileOption: bit 6 SDM enabled, bits 1-0 CommMode (00 plain, 01 MAC, 11 full; §10.7.1 Table 69).
* AccessRights: a 16-bit value sent LSB first whose nibbles from the top are Read, Write,
  ReadWrite, Change (§8.2.3.3). On the wire ``00 E0`` therefore means RW=0, Change=0, Read=E,
  Write=0 — the reading AN12196 §6.9 uses.
* SDMAccessRights: 16 bits LSB first, nibbles SDMMetaRead, SDMFileRead, RFU (F), SDMCtrRet
  (Table 69); AN12196's ``F1 21`` is MetaRead=2, FileRead=1, CtrRet=1.
* Offsets and the read-counter limit: 3 bytes LSB first, present only under the conditions of
  Table 69 (see :func:`_present_fields`).
* Factory state (datasheet §8.2.2 and a factory-fresh chip's GetFileSettings): file 01 (CC,
  E103, 32 B, plain, ``00E0``), file 02 (NDEF, E104, 256 B, plain, ``E0EE``), file 03
  (proprietary, E105, 128 B, full, ``3023``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from station.emulator.status import LENGTH_ERROR, PARAMETER_ERROR, Reject

FREE: Final = 0xE
NEVER: Final = 0xF
KEY_COUNT: Final = 5
NO_MIRROR: Final = 0xFFFFFF

UID_ASCII_LEN: Final = 14
CTR_ASCII_LEN: Final = 6
PICC_DATA_ASCII_LEN: Final = 32  # AES mode: one encrypted block, hex
SDMMAC_ASCII_LEN: Final = 16

SDM_OPT_UID: Final = 0x80
SDM_OPT_READ_CTR: Final = 0x40
SDM_OPT_READ_CTR_LIMIT: Final = 0x20
SDM_OPT_ENC_FILE_DATA: Final = 0x10
SDM_OPT_ASCII: Final = 0x01


class CommMode(IntEnum):
    PLAIN = 0
    MAC = 1
    FULL = 3


def _comm_mode(bits: int) -> CommMode:
    # 10b is not listed; DESFire-family chips treat it like plain (X0b), and so do we.
    return CommMode.FULL if bits == 3 else CommMode.MAC if bits == 1 else CommMode.PLAIN


def _valid_condition(nibble: int) -> bool:
    return nibble < KEY_COUNT or nibble in (FREE, NEVER)


@dataclass(frozen=True)
class AccessRights:
    read: int
    write: int
    read_write: int
    change: int

    @classmethod
    def from_bytes(cls, raw: bytes) -> AccessRights:
        value = int.from_bytes(raw[:2], "little")
        return cls(value >> 12, (value >> 8) & 0xF, (value >> 4) & 0xF, value & 0xF)

    def to_bytes(self) -> bytes:
        value = self.read << 12 | self.write << 8 | self.read_write << 4 | self.change
        return value.to_bytes(2, "little")

    def valid(self) -> bool:
        nibbles = (self.read, self.write, self.read_write, self.change)
        return all(_valid_condition(n) for n in nibbles)


@dataclass(frozen=True)
class SdmSettings:
    """SDM part of a file's settings; offsets are ``None`` when absent from the encoding."""

    options: int
    meta_read: int
    file_read: int
    ctr_ret: int
    uid_offset: int | None = None
    read_ctr_offset: int | None = None
    picc_data_offset: int | None = None
    mac_input_offset: int | None = None
    enc_offset: int | None = None
    enc_length: int | None = None
    mac_offset: int | None = None
    read_ctr_limit: int | None = None

    @property
    def uid_mirror(self) -> bool:
        return bool(self.options & SDM_OPT_UID)

    @property
    def read_ctr(self) -> bool:
        return bool(self.options & SDM_OPT_READ_CTR)

    @property
    def enc_file_data(self) -> bool:
        return bool(self.options & SDM_OPT_ENC_FILE_DATA)

    @property
    def encrypted_picc_data(self) -> bool:
        return self.meta_read < KEY_COUNT

    @property
    def plain_ctr_mirrored(self) -> bool:
        return self.read_ctr_offset is not None and self.read_ctr_offset != NO_MIRROR

    @property
    def limit(self) -> int:
        """The effective read-counter limit (disabled = FFFFFF, datasheet §9.3.2)."""
        return self.read_ctr_limit if self.read_ctr_limit is not None else NO_MIRROR

    def access_bytes(self) -> bytes:
        value = self.meta_read << 12 | self.file_read << 8 | 0xF << 4 | self.ctr_ret
        return value.to_bytes(2, "little")


_OFFSET_FIELDS: Final = (
    "uid_offset",
    "read_ctr_offset",
    "picc_data_offset",
    "mac_input_offset",
    "enc_offset",
    "enc_length",
    "mac_offset",
    "read_ctr_limit",
)


def _present_fields(options: int, meta_read: int, file_read: int) -> list[str]:
    """Which 3-byte fields follow SDMAccessRights (datasheet §10.7.1 Table 69)."""
    present = []
    if options & SDM_OPT_UID and meta_read == FREE:
        present.append("uid_offset")
    if options & SDM_OPT_READ_CTR and meta_read == FREE:
        present.append("read_ctr_offset")
    if meta_read < KEY_COUNT:
        present.append("picc_data_offset")
    if file_read != NEVER:
        present.append("mac_input_offset")
        if options & SDM_OPT_ENC_FILE_DATA:
            present += ["enc_offset", "enc_length"]
        present.append("mac_offset")
    if options & SDM_OPT_READ_CTR_LIMIT:
        present.append("read_ctr_limit")
    return present


@dataclass(frozen=True)
class FileSettings:
    comm_mode: CommMode
    access: AccessRights
    sdm: SdmSettings | None = None

    def file_option(self) -> int:
        return int(self.comm_mode) | (0x40 if self.sdm else 0)

    def encode(self) -> bytes:
        """FileOption || AccessRights [|| SDM fields], as ChangeFileSettings carries them."""
        out = bytes([self.file_option()]) + self.access.to_bytes()
        if self.sdm is not None:
            sdm = self.sdm
            out += bytes([sdm.options]) + sdm.access_bytes()
            for name in _present_fields(sdm.options, sdm.meta_read, sdm.file_read):
                value = getattr(sdm, name)
                out += int(value).to_bytes(3, "little")
        return out

    def encode_for_get(self, size: int) -> bytes:
        """GetFileSettings response (Table 73): FileType 00, FileOption, AR, FileSize, SDM."""
        head = self.encode()
        return b"\x00" + head[:3] + size.to_bytes(3, "little") + head[3:]


def decode_settings(data: bytes, file_size: int, read_ctr_after: int) -> FileSettings:
    """Parse ChangeFileSettings command data, validating it as Table 71 demands.

    ``read_ctr_after`` is the SDMReadCtr the file will have once the settings apply (0 when
    SDM is being enabled, §9.3.1), against which a new SDMReadCtrLimit is checked.
    Raises :class:`Reject` with 917E for a wrong length and 919E for a bad value.
    """
    if len(data) < 3:
        raise Reject(LENGTH_ERROR)
    option = data[0]
    if option & 0xBC:
        raise Reject(PARAMETER_ERROR)
    access = AccessRights.from_bytes(data[1:3])
    if not access.valid():
        raise Reject(PARAMETER_ERROR)
    comm = _comm_mode(option & 0x03)
    if not option & 0x40:
        if len(data) != 3:
            raise Reject(LENGTH_ERROR)
        return FileSettings(comm, access)
    if len(data) < 6:
        raise Reject(LENGTH_ERROR)
    options = data[3]
    sdm_access = int.from_bytes(data[4:6], "little")
    meta_read, file_read = sdm_access >> 12, (sdm_access >> 8) & 0xF
    rfu, ctr_ret = (sdm_access >> 4) & 0xF, sdm_access & 0xF
    names = _present_fields(options, meta_read, file_read)
    if len(data) != 6 + 3 * len(names):
        raise Reject(LENGTH_ERROR)
    values = {
        name: int.from_bytes(data[6 + 3 * i : 9 + 3 * i], "little") for i, name in enumerate(names)
    }
    sdm = SdmSettings(options, meta_read, file_read, ctr_ret, **values)
    bad = (
        options & 0x0E
        or not options & SDM_OPT_ASCII  # only ASCII encoding exists on NT4H2421Gx (§9.3.5)
        or rfu != NEVER
        or not (meta_read < KEY_COUNT or meta_read in (FREE, NEVER))
        or not (file_read < KEY_COUNT or file_read == NEVER)
        or not _valid_condition(ctr_ret)
        or not _sdm_consistent(sdm, file_size, read_ctr_after)
    )
    if bad:
        raise Reject(PARAMETER_ERROR)
    return FileSettings(comm, access, sdm)


def _sdm_consistent(sdm: SdmSettings, size: int, read_ctr_after: int) -> bool:
    """The value rules of Table 71 (PARAMETER_ERROR) plus placeholders inside the file."""
    if sdm.meta_read != NEVER and not (sdm.uid_mirror or sdm.read_ctr):
        return False
    if sdm.meta_read == NEVER and sdm.uid_mirror:
        return False
    if sdm.ctr_ret != NEVER and not sdm.read_ctr:
        return False
    if sdm.enc_file_data and (sdm.file_read == NEVER or not (sdm.uid_mirror and sdm.read_ctr)):
        return False
    if sdm.read_ctr_limit is not None and (
        not sdm.read_ctr or sdm.read_ctr_limit <= read_ctr_after
    ):
        return False
    regions = mirror_regions(sdm)
    if any(start < 0 or start + length > size for start, length in regions.values()):
        return False
    spans = sorted(regions.values())
    if any(a + alen > b for (a, alen), (b, _) in itertools.pairwise(spans)):
        return False
    if sdm.file_read != NEVER:
        mac_in, mac_at = int(sdm.mac_input_offset or 0), int(sdm.mac_offset or 0)
        if mac_in > mac_at:
            return False
        if sdm.enc_file_data:
            enc_at, enc_len = int(sdm.enc_offset or 0), int(sdm.enc_length or 0)
            if enc_len < 32 or enc_len % 32 or enc_at < mac_in or enc_at + enc_len > mac_at:
                return False
    return True


def mirror_regions(sdm: SdmSettings) -> dict[str, tuple[int, int]]:
    """Placeholder (offset, length) of everything the card writes into the file on a read."""
    regions: dict[str, tuple[int, int]] = {}
    if sdm.uid_offset is not None:
        regions["uid"] = (sdm.uid_offset, UID_ASCII_LEN)
    if sdm.plain_ctr_mirrored:
        regions["ctr"] = (int(sdm.read_ctr_offset or 0), CTR_ASCII_LEN)
    if sdm.picc_data_offset is not None:
        regions["picc"] = (sdm.picc_data_offset, PICC_DATA_ASCII_LEN)
    if sdm.enc_offset is not None and sdm.enc_length is not None:
        regions["enc"] = (sdm.enc_offset, sdm.enc_length)
    if sdm.mac_offset is not None:
        regions["mac"] = (sdm.mac_offset, SDMMAC_ASCII_LEN)
    return regions


@dataclass
class DataFile:
    """One StandardData file: its contents, settings and SDM read counter."""

    number: int
    iso_id: int
    data: bytearray
    settings: FileSettings
    sdm_read_ctr: int = 0

    @property
    def size(self) -> int:
        return len(self.data)


# Capability container of a factory-fresh chip: CCLEN 0017, T4T v2.0, MLe 0100, MLc 00FF,
# NDEF file TLV (E104, 256 B, read/write free) and proprietary file TLV (E105, 128 B, 82/83).
FACTORY_CC: Final = bytes.fromhex("001720010000FF0406E104010000000506E10500808283").ljust(32, b"\0")

NDEF_APP_DF_NAME: Final = bytes.fromhex("D2760000850101")
PICC_DF_NAME: Final = bytes.fromhex("D2760000850100")
NDEF_APP_FILE_ID: Final = 0xE110
MF_FILE_ID: Final = 0x3F00


def factory_files() -> dict[int, DataFile]:
    """The three files as NXP ships them (datasheet §8.2.2)."""
    return {
        1: DataFile(
            1, 0xE103, bytearray(FACTORY_CC),
            FileSettings(CommMode.PLAIN, AccessRights(FREE, 0, 0, 0)),
        ),
        2: DataFile(
            2, 0xE104, bytearray(256),
            FileSettings(CommMode.PLAIN, AccessRights(FREE, FREE, FREE, 0)),
        ),
        3: DataFile(
            3, 0xE105, bytearray(128),
            FileSettings(CommMode.FULL, AccessRights(2, 3, 3, 0)),
        ),
    }


def with_sdm_counter_reset(old: FileSettings, new: FileSettings, ctr: int) -> int:
    """The SDMReadCtr after a ChangeFileSettings: reset when SDM goes from off to on (§9.3.1)."""
    return 0 if new.sdm is not None and old.sdm is None else ctr


__all__ = [
    "FREE",
    "NEVER",
    "AccessRights",
    "CommMode",
    "DataFile",
    "FileSettings",
    "SdmSettings",
    "decode_settings",
    "factory_files",
    "mirror_regions",
]
