"""A software NTAG 424 DNA (NT4H2421Gx) that answers APDUs the way the datasheet says.

It is the test peer of the whole station: the pcscd/vpcd bridge, nfcpy's UDP card and the
daemon put it behind real reader stacks, and the reader-side core is checked against it. It
was written from NXP's NT4H2421Gx data sheet (Rev. 3.0) and AN12196, not from the reader code.

Pure: bytes in, bytes out. No I/O, no clock; every random byte (RndB, TI, PICCData padding,
random UIDs) comes from the injected ``rng``. The state that a real chip keeps in EEPROM is a
:class:`~station.emulator.state.CardState` (``to_state()`` / ``from_state()``);
selection, authentication and chained frames are volatile and vanish on :meth:`power_cycle`.

Modules: ``files`` (file system and settings encoding), ``sm`` (card-side secure
messaging), ``sdm`` (SUN mirroring), ``auth`` (EV2 authentication and the failed
authentication counter), ``native`` (the native command set), ``state``
(persistence). What a real chip does that this one does not is listed in
``firmware_notes/emulated-card.md``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from station.emulator import sdm as card_sdm
from station.emulator.files import (
    FREE,
    MF_FILE_ID,
    NDEF_APP_DF_NAME,
    NDEF_APP_FILE_ID,
    PICC_DF_NAME,
    DataFile,
)
from station.emulator.native import NativeCommands, Pending, Selected
from station.emulator.sm import CardSession
from station.emulator.state import CardState
from station.emulator.status import (
    ISO_CLA_NOT_SUPPORTED,
    ISO_CONDITIONS_NOT_SATISFIED,
    ISO_FILE_NOT_FOUND,
    ISO_INS_NOT_SUPPORTED,
    ISO_LC_INCONSISTENT,
    ISO_OK,
    ISO_SECURITY_NOT_SATISFIED,
    ISO_WRONG_LENGTH,
    ISO_WRONG_P1P2,
    READER_FUNCTION_NOT_SUPPORTED,
    Reject,
    sw_bytes,
)
from station.ntag424 import crypto

Rng = Callable[[int], bytes]

DEFAULT_UID: Final = bytes.fromhex("04A1B2C3D4E580")
# ATS of a factory chip as an ACR122U reports it: TL 06, T0 77 (FSCI 7, TA/TB/TC follow),
# TA 77, TB 71 (FWI 7 as §10.4 says the user ATS holds, SFGI 1), TC 02, historical byte 80.
DEFAULT_ATS: Final = bytes.fromhex("067777710280")
# Seed of the emulator's originality key pair. NOT NXP's key: a signature from this card
# verifies only against TEST_ORIGINALITY_PUBLIC_KEY, never against NXP's published key.
TEST_SIGNING_SEED: Final = b"boltcard-station emulated NTAG 424 DNA originality TEST key (not NXP)"
_SECP224R1_ORDER: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFF16A2E0B8F03E13DD29455C5C2A3D


def test_signing_key() -> int:
    """The deterministic secp224r1 private scalar every emulated card signs its UID with."""
    digest = hashlib.sha256(TEST_SIGNING_SEED).digest()
    return int.from_bytes(digest, "big") % (_SECP224R1_ORDER - 1) + 1


TEST_ORIGINALITY_PUBLIC_KEY: Final = crypto.secp224r1_public_point(test_signing_key())


def originality_signature(key: int, uid: bytes) -> bytes:
    """56-byte r || s, ECDSA on secp224r1 with the raw UID as the message integer (no hash).

    AN12196 §8.2: the 7-byte UID is used directly; left-padding it to the 28-byte digest size
    gives the same integer. Deterministic (RFC 6979), like a signature burnt in at production.
    """
    return crypto.ecdsa_secp224r1_sign(key, bytes(28 - len(uid)) + uid)


@dataclass(frozen=True)
class ReaderFeedback:
    """The last ACR122U LED/buzzer pseudo-APDU (FF 00 40 P2 04 T1 T2 reps link)."""

    led_state: int
    t1: int
    t2: int
    repetitions: int
    buzzer_link: int


class EmulatedCard(NativeCommands):
    """An NTAG 424 DNA in the field of an ACR122U-like PC/SC reader."""

    def __init__(
        self,
        uid: bytes = DEFAULT_UID,
        rng: Rng = os.urandom,
        signing_key: int | None = None,
        *,
        state: CardState | None = None,
    ) -> None:
        if len(uid) != 7:
            raise ValueError("an NTAG 424 DNA UID is 7 bytes")
        self._nvm = state if state is not None else CardState(uid=bytes(uid))
        self._rng = rng
        self._signing_key = signing_key if signing_key is not None else test_signing_key()
        self.last_feedback: ReaderFeedback | None = None
        self._reset_volatile()

    # -- construction, persistence, field ---------------------------------------------------

    @classmethod
    def factory(cls, uid: bytes = DEFAULT_UID, rng: Rng = os.urandom) -> EmulatedCard:
        """A card as NXP ships it: all keys zero (version 00), factory files, no SDM."""
        return cls(uid=uid, rng=rng)

    def to_state(self) -> dict[str, Any]:
        """The non-volatile memory as a JSON-ready dict (see ``card_state.save_state``)."""
        return self._nvm.to_dict()

    @classmethod
    def from_state(
        cls,
        state: dict[str, Any],
        rng: Rng = os.urandom,
        signing_key: int | None = None,
    ) -> EmulatedCard:
        nvm = CardState.from_dict(state)
        return cls(uid=nvm.uid, rng=rng, signing_key=signing_key, state=nvm)

    @property
    def uid(self) -> bytes:
        """The real 7-byte UID (what GetCardUID and SUN mirroring use)."""
        return self._nvm.uid

    @property
    def originality_public_key(self) -> bytes:
        """Uncompressed secp224r1 point that verifies this card's Read_Sig answer."""
        return crypto.secp224r1_public_point(self._signing_key)

    @property
    def authenticated_key(self) -> int | None:
        """Key number of the current EV2 session, ``None`` when not authenticated."""
        return self._session.key_no if self._session else None

    def sdm_read_counter(self, file_no: int = 2) -> int:
        """The file's SDMReadCtr as the card holds it (what GetFileCounters would say)."""
        return self._nvm.files[file_no].sdm_read_ctr

    def deselect(self) -> None:
        """Field off or ISO DESELECT: selection, authentication and chaining are lost."""
        self._reset_volatile()

    def power_cycle(self) -> None:
        """Field off and on again: like :meth:`deselect`, and a random ID is drawn anew."""
        self._reset_volatile()

    def _reset_volatile(self) -> None:
        self._selected = Selected.PICC
        self._file: DataFile | None = None
        self._session: CardSession | None = None
        self._pending: Pending | None = None
        self._read_session: tuple[str, int] | None = None
        self._prev_read_session: tuple[str, int] | None = None
        self._sdm_view: bytes | None = None
        self._random_uid: bytes | None = None

    def install_session(
        self, key_no: int, ti: bytes, k_enc: bytes, k_mac: bytes, cmd_ctr: int = 0
    ) -> None:
        """Put the card in an EV2 authenticated state without an authentication exchange.

        A door a real chip does not have: it exists so published transcripts whose RndA/RndB
        are not printed (AN12196 Tables 8, 9, 28, 29) can be replayed against the card.
        """
        self._selected = Selected.APP
        self._session = CardSession(key_no, bytes(ti), bytes(k_enc), bytes(k_mac), cmd_ctr)

    # -- the APDU entry point ---------------------------------------------------------------

    def transceive(self, apdu: bytes) -> bytes:
        """Process one C-APDU; returns response data || SW1 SW2."""
        if apdu[:1] == b"\xff":
            return self._reader_pseudo_apdu(bytes(apdu))
        self._prev_read_session, self._read_session = self._read_session, None
        try:
            cla, ins, p1, p2, data, le = _parse(bytes(apdu))
            if cla == 0x90:
                return self._native(ins, p1, p2, data)
            if cla == 0x00:
                self._pending = None
                return self._iso(ins, p1, p2, data, le)
            raise Reject(ISO_CLA_NOT_SUPPORTED)
        except Reject as rej:
            if apdu[:1] == b"\x90":
                # §9.1.9: any error ends the transaction and the authenticated state.
                self._session = None
                self._pending = None
            return sw_bytes(rej.sw)

    # -- reader pseudo-APDUs (ACR122U, passed through by vpcd) ------------------------------

    def _reader_pseudo_apdu(self, apdu: bytes) -> bytes:
        if apdu[:4] == b"\xff\xca\x00\x00":
            return self._visible_uid() + sw_bytes(ISO_OK)
        if apdu[:4] == b"\xff\xca\x01\x00":
            return DEFAULT_ATS + sw_bytes(ISO_OK)
        if apdu[:3] == b"\xff\x00\x40" and len(apdu) >= 9:
            t1, t2, reps, link = apdu[5], apdu[6], apdu[7], apdu[8]
            self.last_feedback = ReaderFeedback(apdu[3], t1, t2, reps, link)
            return sw_bytes(ISO_OK)
        return sw_bytes(READER_FUNCTION_NOT_SUPPORTED)

    def _visible_uid(self) -> bytes:
        """The UID anticollision shows: the real one, or a fresh 4-byte 08xxxxxx random ID."""
        if not self._nvm.random_id:
            return self._nvm.uid
        if self._random_uid is None:
            self._random_uid = b"\x08" + self._rng(3)
        return self._random_uid

    # -- ISO/IEC 7816-4 commands ------------------------------------------------------------

    def _iso(self, ins: int, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
        if ins == 0xA4:
            self._select(p1, p2, data)
            return sw_bytes(ISO_OK)
        if ins == 0xB0:
            return self._read_binary(p1, p2, data, le) + sw_bytes(ISO_OK)
        if ins == 0xD6:
            self._update_binary(p1, p2, data)
            return sw_bytes(ISO_OK)
        raise Reject(ISO_INS_NOT_SUPPORTED)

    def _select(self, p1: int, p2: int, data: bytes) -> None:
        """ISOSelectFile (§10.9.1). Selecting a DF ends any authentication; an EF keeps it."""
        if p2 not in (0x00, 0x0C):
            raise Reject(ISO_WRONG_P1P2)
        if p1 == 0x04:
            if data == NDEF_APP_DF_NAME:
                return self._select_df(Selected.APP)
            if data == PICC_DF_NAME:
                return self._select_df(Selected.PICC)
            raise Reject(ISO_FILE_NOT_FOUND)
        if p1 == 0x03 or (p1 == 0x00 and not data):
            return self._select_df(Selected.PICC)
        if p1 not in (0x00, 0x01, 0x02):
            raise Reject(ISO_WRONG_P1P2)
        if len(data) != 2:
            raise Reject(ISO_LC_INCONSISTENT)
        fid = int.from_bytes(data, "big")
        if fid == MF_FILE_ID and p1 == 0x00:
            return self._select_df(Selected.PICC)
        if fid == NDEF_APP_FILE_ID and p1 in (0x00, 0x01):
            return self._select_df(Selected.APP)
        if p1 in (0x00, 0x02) and self._selected is Selected.APP:
            for f in self._nvm.files.values():
                if f.iso_id == fid:
                    self._file = f
                    return None
        raise Reject(ISO_FILE_NOT_FOUND)

    def _select_df(self, which: Selected) -> None:
        self._selected = which
        self._file = None
        self._session = None

    def _iso_target(self, p1: int, p2: int) -> tuple[DataFile, int]:
        """File and offset of ISOReadBinary/ISOUpdateBinary (§10.9.2 Table 87)."""
        if p1 & 0x80:
            if p1 & 0x60:
                raise Reject(ISO_WRONG_P1P2)
            sfi = p1 & 0x1F
            if sfi and self._selected is Selected.APP:
                if sfi not in self._nvm.files:
                    raise Reject(ISO_FILE_NOT_FOUND)
                self._file = self._nvm.files[sfi]
            elif sfi:
                raise Reject(ISO_FILE_NOT_FOUND)
            offset = p2
        else:
            offset = (p1 << 8) | p2
        if self._file is None:
            raise Reject(ISO_CONDITIONS_NOT_SATISFIED)
        if self._session is not None:
            # Table 89: "Security status not satisfied: AuthenticatedEV2 not allowed".
            raise Reject(ISO_SECURITY_NOT_SATISFIED)
        if offset >= self._file.size:
            raise Reject(ISO_WRONG_P1P2)
        return self._file, offset

    def _read_binary(self, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
        if data or le is None:
            raise Reject(ISO_WRONG_LENGTH)
        f, offset = self._iso_target(p1, p2)
        ar, sdm = f.settings.access, f.settings.sdm
        if FREE not in (ar.read, ar.read_write) and (sdm is None or sdm.file_read == 0xF):
            raise Reject(ISO_SECURITY_NOT_SATISFIED)
        view = self._file_view(f, "iso", limit_sw=ISO_SECURITY_NOT_SATISFIED,
                               overflow_sw=ISO_SECURITY_NOT_SATISFIED)
        return view[offset : offset + le]

    def _update_binary(self, p1: int, p2: int, data: bytes) -> None:
        if not data:
            raise Reject(ISO_WRONG_LENGTH)
        f, offset = self._iso_target(p1, p2)
        ar = f.settings.access
        if FREE not in (ar.write, ar.read_write):
            raise Reject(ISO_SECURITY_NOT_SATISFIED)
        if offset + len(data) > f.size:
            raise Reject(ISO_WRONG_LENGTH)
        f.data[offset : offset + len(data)] = data

    # -- Secure Dynamic Messaging -----------------------------------------------------------

    def _file_view(self, f: DataFile, kind: str, *, limit_sw: int, overflow_sw: int) -> bytes:
        """The file as a read shows it: static when authenticated, SDM-mirrored otherwise.

        §9.3.1: in not-authenticated state the SDMReadCtr is incremented before the response
        of the first read (ReadData or ISOReadBinary) and reused by following reads of the
        same type on the same file, until any other command arrives; the random padding of
        PICCData follows the same rule (§9.3.4). At the limit (or FFFFFF) the read fails.
        """
        sdm = f.settings.sdm
        if self._session is not None or sdm is None:
            return bytes(f.data)
        key = (kind, f.number)
        if self._prev_read_session == key and self._sdm_view is not None:
            view = self._sdm_view
        else:
            if sdm.read_ctr:
                if f.sdm_read_ctr >= 0xFFFFFF:
                    raise Reject(overflow_sw)
                if f.sdm_read_ctr >= sdm.limit:
                    raise Reject(limit_sw)
                f.sdm_read_ctr += 1
            view = card_sdm.render(
                bytes(f.data), sdm, uid=self._nvm.uid, read_ctr=f.sdm_read_ctr,
                keys=self._nvm.keys, rng=self._rng,
            )
            self._sdm_view = view
        self._read_session = key
        return view

    def _continue_read_session(self) -> None:
        self._read_session = self._prev_read_session

    def _signature(self) -> bytes:
        return originality_signature(self._signing_key, self._nvm.uid)



def _parse(apdu: bytes) -> tuple[int, int, int, int, bytes, int | None]:
    """Split a short C-APDU (ISO/IEC 7816-3 cases 1-4); extended length is not supported."""
    if len(apdu) < 4:
        raise Reject(ISO_WRONG_LENGTH)
    cla, ins, p1, p2 = apdu[:4]
    if len(apdu) == 4:
        return cla, ins, p1, p2, b"", None
    if len(apdu) == 5:
        return cla, ins, p1, p2, b"", apdu[4] or 256
    lc = apdu[4]
    if lc == 0:
        raise Reject(ISO_WRONG_LENGTH)
    if len(apdu) == 5 + lc:
        return cla, ins, p1, p2, apdu[5:], None
    if len(apdu) == 6 + lc:
        return cla, ins, p1, p2, apdu[5:-1], apdu[-1] or 256
    raise Reject(ISO_WRONG_LENGTH)
