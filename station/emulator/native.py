"""The native NTAG 424 DNA command set (CLA 90), as a mixin of :class:`EmulatedCard`.

One method per command of NT4H2421Gx §10 Table 22. Each reads its plain CmdHeader first (it
decides the file, key and therefore the communication mode), lets the session check and unwrap
the rest (:meth:`_open`), and seals its answer with :meth:`_ok`. Refusals raise
:class:`~station.emulator.status.Reject` with the status word the command's return-code
table gives; the dispatcher then also ends the authenticated state, as §9.1.9 requires.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Final

from station.emulator.auth import (
    AuthPending,
    key_blocked,
    record_failure,
    record_success,
    take_delay,
)
from station.emulator.files import (
    FREE,
    KEY_COUNT,
    NEVER,
    CommMode,
    DataFile,
    decode_settings,
    with_sdm_counter_reset,
)
from station.emulator.sm import CardSession, session_keys
from station.emulator.state import CardState
from station.emulator.status import (
    ADDITIONAL_FRAME,
    AUTHENTICATION_DELAY,
    AUTHENTICATION_ERROR,
    BOUNDARY_ERROR,
    FILE_NOT_FOUND,
    ILLEGAL_COMMAND_CODE,
    INTEGRITY_ERROR,
    LENGTH_ERROR,
    NO_SUCH_KEY,
    OPERATION_OK,
    PARAMETER_ERROR,
    PERMISSION_DENIED,
    Reject,
    sw_bytes,
)
from station.ntag424 import crypto

MAX_FRAME: Final = 256  # short Le: at most 256 response bytes per frame, SM included
# GetVersion part 3 after the UID: BatchNo (4), BatchNo/FabKey, FabKey/CWProd, YearProd.
# Arbitrary production data of this emulator (week 20 of 2025, BCD coded as the datasheet
# says), not a real batch.
PRODUCTION_DATA: Final = bytes.fromhex("00000000" "00" "20" "25")
SW_VERSION: Final = bytes.fromhex("04040201021105")
_SET_CONFIG_LENGTHS: Final = {0x00: 1, 0x04: 2, 0x05: 10, 0x0A: 5, 0x0B: 1}


class Selected(Enum):
    PICC = "picc"  # the MF / PICC level
    APP = "app"  # the NDEF application D2760000850101


@dataclass
class FramesPending:
    """Response frames still to be fetched with 90 AF (GetVersion, long ReadData)."""

    frames: list[bytes]


@dataclass
class WritePending:
    """A chained WriteData: the card has the header and part of the body, wants the rest."""

    body: bytearray
    expected: int
    finish: Callable[[bytes], bytes]


Pending = AuthPending | FramesPending | WritePending


class NativeCommands:
    """Native command handlers; state lives in the :class:`EmulatedCard` that mixes this in."""

    _nvm: CardState
    _rng: Callable[[int], bytes]
    _session: CardSession | None
    _pending: Pending | None
    _selected: Selected

    # Provided by EmulatedCard.
    def _file_view(self, f: DataFile, kind: str, *, limit_sw: int, overflow_sw: int) -> bytes:
        raise NotImplementedError

    def _continue_read_session(self) -> None:
        raise NotImplementedError

    def _signature(self) -> bytes:
        raise NotImplementedError

    # -- plumbing -----------------------------------------------------------------------

    def _native(self, ins: int, p1: int, p2: int, data: bytes) -> bytes:
        if ins == 0xAF:
            return self._additional_frame(data)
        self._pending = None  # a new command aborts any ongoing multi-frame exchange
        handler = _HANDLERS.get(ins)
        if handler is None:
            raise Reject(ILLEGAL_COMMAND_CODE)
        if p1 or p2:
            raise Reject(PARAMETER_ERROR)
        return handler(self, data)

    def _open(self, cmd: int, header: bytes, body: bytes, mode: CommMode) -> bytes:
        if self._session is None:
            return body
        return self._session.open_command(cmd, header, body, mode)

    def _ok(self, data: bytes, mode: CommMode) -> bytes:
        out = self._session.seal_response(data, mode) if self._session else data
        if len(out) <= MAX_FRAME:
            return out + sw_bytes(OPERATION_OK)
        frames = [out[i : i + MAX_FRAME] for i in range(0, len(out), MAX_FRAME)]
        self._pending = FramesPending(frames[1:])
        return frames[0] + sw_bytes(ADDITIONAL_FRAME)

    def _additional_frame(self, data: bytes) -> bytes:
        pending, self._pending = self._pending, None
        if isinstance(pending, AuthPending):
            return self._auth_part2(pending, data)
        if isinstance(pending, FramesPending):
            self._continue_read_session()
            if data:
                raise Reject(LENGTH_ERROR)
            frame = pending.frames.pop(0)
            if pending.frames:
                self._pending = pending
                return frame + sw_bytes(ADDITIONAL_FRAME)
            return frame + sw_bytes(OPERATION_OK)
        if isinstance(pending, WritePending):
            pending.body += data
            if len(pending.body) > pending.expected:
                raise Reject(LENGTH_ERROR)
            if len(pending.body) < pending.expected:
                self._pending = pending
                return sw_bytes(ADDITIONAL_FRAME)
            return pending.finish(bytes(pending.body))
        raise Reject(ILLEGAL_COMMAND_CODE)

    def _require_app(self) -> None:
        if self._selected is not Selected.APP:
            raise Reject(PERMISSION_DENIED)

    def _target_file(self, file_no: int) -> DataFile:
        self._require_app()
        if file_no & 0xE0:
            raise Reject(PARAMETER_ERROR)
        f = self._nvm.files.get(file_no)
        if f is None:
            raise Reject(FILE_NOT_FOUND)
        return f

    def _require_master_key(self) -> CardSession:
        if self._session is None or self._session.key_no != 0:
            raise Reject(AUTHENTICATION_ERROR)
        return self._session

    def _access_mode(self, f: DataFile, keys: tuple[int, int], sdm_read: bool) -> CommMode:
        """CommMode of a data access guarded by ``keys`` = (Read|Write, ReadWrite).

        With the matching key authenticated the file's CommMode applies; free access (E) is
        plain; unauthenticated SDM reading is plain too. All-F is PERMISSION_DENIED, anything
        else AUTHENTICATION_ERROR (Tables 80 and 83).
        """
        sdm = f.settings.sdm
        sdm_key = sdm.file_read if (sdm_read and sdm is not None) else NEVER
        if self._session is not None and self._session.key_no in keys:
            return f.settings.comm_mode
        if FREE in keys or (self._session is None and sdm_key != NEVER):
            return CommMode.PLAIN
        if all(k == NEVER for k in (*keys, sdm_key)):
            raise Reject(PERMISSION_DENIED)
        raise Reject(AUTHENTICATION_ERROR)

    # -- authentication (§9.1.5, §9.1.6, §10.4) ---------------------------------------------

    def _auth_first(self, data: bytes) -> bytes:
        if len(data) < 2:
            raise Reject(LENGTH_ERROR)
        key_no, len_cap = data[0], data[1]
        if len_cap > 6:
            raise Reject(PARAMETER_ERROR)
        if len(data) != 2 + len_cap:
            raise Reject(LENGTH_ERROR)
        return self._auth_part1(key_no, first=True, pcdcap2=(data[2:] + bytes(6))[:6])

    def _auth_non_first(self, data: bytes) -> bytes:
        if self._session is None:
            raise Reject(PERMISSION_DENIED)
        if len(data) != 1:
            raise Reject(LENGTH_ERROR)
        return self._auth_part1(data[0], first=False, pcdcap2=b"")

    def _auth_part1(self, key_no: int, *, first: bool, pcdcap2: bytes) -> bytes:
        if self._selected is not Selected.APP:
            # Application keys exist only inside the NDEF application; a real chip at PICC
            # level answers 911C (observed through NXP's TapLinx, mifare.net forum 2020).
            raise Reject(ILLEGAL_COMMAND_CODE)
        if key_no & 0xC0:
            raise Reject(PARAMETER_ERROR)
        if key_no >= KEY_COUNT:
            raise Reject(NO_SUCH_KEY)
        if key_blocked(self._nvm, key_no):
            raise Reject(PERMISSION_DENIED)
        if take_delay(self._nvm):
            raise Reject(AUTHENTICATION_DELAY)
        previous, self._session = self._session, None
        rnd_b = self._rng(16)
        ti = self._rng(4) if first or previous is None else previous.ti
        ctr = previous.cmd_ctr if previous is not None and not first else 0
        self._pending = AuthPending(first, key_no, rnd_b, ti, pcdcap2, ctr)
        challenge = crypto.aes_cbc_encrypt(self._nvm.keys[key_no], crypto.ZERO_IV, rnd_b)
        return challenge + sw_bytes(ADDITIONAL_FRAME)

    def _auth_part2(self, p: AuthPending, data: bytes) -> bytes:
        if len(data) != 32:
            raise Reject(LENGTH_ERROR)
        key = self._nvm.keys[p.key_no]
        plain = crypto.aes_cbc_decrypt(key, crypto.ZERO_IV, data)
        rnd_a, rnd_b_rot = plain[:16], plain[16:]
        if not hmac.compare_digest(rnd_b_rot, crypto.rotate_left(p.rnd_b)):
            record_failure(self._nvm, p.key_no)
            raise Reject(AUTHENTICATION_ERROR)
        record_success(self._nvm, p.key_no)
        k_enc, k_mac = session_keys(key, rnd_a, p.rnd_b)
        self._session = CardSession(p.key_no, p.ti, k_enc, k_mac, p.prev_cmd_ctr)
        if p.first:
            pdcap2 = bytes([0, 0, 0, 0, self._nvm.pdcap2_5, self._nvm.pdcap2_6])
            answer = p.ti + crypto.rotate_left(rnd_a) + pdcap2 + p.pcdcap2
        else:
            answer = crypto.rotate_left(rnd_a)
        return crypto.aes_cbc_encrypt(key, crypto.ZERO_IV, answer) + sw_bytes(OPERATION_OK)

    # -- memory and configuration (§10.5) ---------------------------------------------------

    def _get_version(self, data: bytes) -> bytes:
        if self._open(0x60, b"", data, CommMode.MAC):
            raise Reject(LENGTH_ERROR)
        nvm = self._nvm
        hw = bytes([0x04, 0x04, 0x02 if nvm.strong_modulation else 0x82, 0x30, 0x00, 0x11, 0x05])
        production = (bytes(7) if nvm.random_id else nvm.uid) + PRODUCTION_DATA
        last = production
        if self._session is not None:  # MAC over all three parts, sent with the last (Table 22)
            last += self._session.seal_response(hw + SW_VERSION + production, CommMode.MAC)[-8:]
        self._pending = FramesPending([SW_VERSION, last])
        return hw + sw_bytes(ADDITIONAL_FRAME)

    def _get_card_uid(self, data: bytes) -> bytes:
        if self._session is None:
            raise Reject(AUTHENTICATION_ERROR)
        if self._open(0x51, b"", data, CommMode.FULL):
            raise Reject(LENGTH_ERROR)
        return self._ok(self._nvm.uid, CommMode.FULL)

    def _set_configuration(self, data: bytes) -> bytes:
        if not data:
            raise Reject(LENGTH_ERROR)
        self._require_app()
        self._require_master_key()
        option = data[0]
        body = self._open(0x5C, data[:1], data[1:], CommMode.FULL)
        if option not in _SET_CONFIG_LENGTHS:
            raise Reject(PARAMETER_ERROR)
        if len(body) != _SET_CONFIG_LENGTHS[option]:
            raise Reject(LENGTH_ERROR)
        nvm = self._nvm
        if option == 0x00:
            if body[0] & 0xFD:
                raise Reject(PARAMETER_ERROR)
            nvm.random_id = nvm.random_id or bool(body[0] & 0x02)
        elif option == 0x04:
            nvm.sm_config |= int.from_bytes(body, "little") & 0x0004
        elif option == 0x05:
            if body[4] & 0x02:  # switching to LRP: permanent, and not emulated
                raise Reject(PARAMETER_ERROR)
            nvm.pdcap2_5, nvm.pdcap2_6 = body[8], body[9]
        elif option == 0x0A:
            enable = bool(body[0] & 0x01)
            limit, decr = int.from_bytes(body[1:3], "little"), int.from_bytes(body[3:5], "little")
            if enable and limit == 0:
                raise Reject(PARAMETER_ERROR)
            nvm.failed_ctr_enabled = enable
            if enable:
                nvm.failed_ctr_limit, nvm.failed_ctr_decr = limit, decr
        else:  # 0x0B hardware: back modulation
            nvm.strong_modulation = bool(body[0] & 0x01)
        return self._ok(b"", CommMode.FULL)

    def _read_sig(self, data: bytes) -> bytes:
        if not data:
            raise Reject(LENGTH_ERROR)
        if data[0] != 0x00:
            raise Reject(PARAMETER_ERROR)
        if self._session is None and self._nvm.random_id:
            raise Reject(AUTHENTICATION_ERROR)  # do not leak the UID-bound signature
        mode = CommMode.FULL if self._session is not None else CommMode.PLAIN
        if self._open(0x3C, data[:1], data[1:], mode):
            raise Reject(LENGTH_ERROR)
        return self._ok(self._signature(), mode)

    # -- key management (§10.6) -------------------------------------------------------------

    def _change_key(self, data: bytes) -> bytes:
        if not data:
            raise Reject(LENGTH_ERROR)
        self._require_app()
        session = self._require_master_key()
        key_no = data[0]
        if key_no & 0xC0:
            raise Reject(PARAMETER_ERROR)
        if key_no >= KEY_COUNT:
            raise Reject(NO_SUCH_KEY)
        body = self._open(0xC4, data[:1], data[1:], CommMode.FULL)
        nvm = self._nvm
        if key_no == session.key_no:
            if len(body) != 17:
                raise Reject(LENGTH_ERROR)
            nvm.keys[key_no], nvm.key_versions[key_no] = body[:16], body[16]
            nvm.tot_fail_ctr[key_no] = 0
            self._session = None  # the session key is gone; answer without MAC
            return sw_bytes(OPERATION_OK)
        if len(body) != 21:
            raise Reject(LENGTH_ERROR)
        new_key = crypto.xor(body[:16], nvm.keys[key_no])
        if not hmac.compare_digest(crypto.crc32nk(new_key), body[17:21]):
            raise Reject(INTEGRITY_ERROR)
        nvm.keys[key_no], nvm.key_versions[key_no] = new_key, body[16]
        nvm.tot_fail_ctr[key_no] = 0  # a changed key is usable again (§9)
        return self._ok(b"", CommMode.FULL)

    def _get_key_version(self, data: bytes) -> bytes:
        if not data:
            raise Reject(LENGTH_ERROR)
        self._require_app()
        key_no = data[0]
        if self._open(0x64, data[:1], data[1:], CommMode.MAC):
            raise Reject(LENGTH_ERROR)
        if key_no & 0xF0:
            raise Reject(PARAMETER_ERROR)
        if key_no >= KEY_COUNT:
            raise Reject(NO_SUCH_KEY)
        return self._ok(bytes([self._nvm.key_versions[key_no]]), CommMode.MAC)

    # -- file management (§10.7) ------------------------------------------------------------

    def _get_file_settings(self, data: bytes) -> bytes:
        if not data:
            raise Reject(LENGTH_ERROR)
        f = self._target_file(data[0])
        if self._open(0xF5, data[:1], data[1:], CommMode.MAC):
            raise Reject(LENGTH_ERROR)
        return self._ok(f.settings.encode_for_get(f.size), CommMode.MAC)

    def _get_file_counters(self, data: bytes) -> bytes:
        if not data:
            raise Reject(LENGTH_ERROR)
        f = self._target_file(data[0])
        sdm = f.settings.sdm
        if sdm is None or sdm.ctr_ret == NEVER:
            raise Reject(PERMISSION_DENIED)
        if self._session is not None and self._session.key_no == sdm.ctr_ret:
            mode = CommMode.FULL
        elif sdm.ctr_ret == FREE:
            mode = CommMode.PLAIN
        else:
            raise Reject(AUTHENTICATION_ERROR)
        if self._open(0xF6, data[:1], data[1:], mode):
            raise Reject(LENGTH_ERROR)
        return self._ok(f.sdm_read_ctr.to_bytes(3, "little") + bytes(2), mode)

    def _change_file_settings(self, data: bytes) -> bytes:
        if not data:
            raise Reject(LENGTH_ERROR)
        f = self._target_file(data[0])
        change = f.settings.access.change
        if change == NEVER:
            raise Reject(PERMISSION_DENIED)
        if change == FREE:
            mode = CommMode.PLAIN
        elif self._session is not None and self._session.key_no == change:
            mode = CommMode.FULL
        else:
            raise Reject(AUTHENTICATION_ERROR)
        body = self._open(0x5F, data[:1], data[1:], mode)
        ctr_after = 0 if f.settings.sdm is None else f.sdm_read_ctr
        new = decode_settings(body, f.size, ctr_after)
        if new.sdm is not None and f.number != 2:
            raise Reject(PERMISSION_DENIED)
        f.sdm_read_ctr = with_sdm_counter_reset(f.settings, new, f.sdm_read_ctr)
        f.settings = new
        return self._ok(b"", mode)

    # -- data management (§10.8) ------------------------------------------------------------

    def _read_data(self, data: bytes) -> bytes:
        if len(data) < 7:
            raise Reject(LENGTH_ERROR)
        f = self._target_file(data[0])
        offset, length = _u24(data[1:4]), _u24(data[4:7])
        ar = f.settings.access
        mode = self._access_mode(f, (ar.read, ar.read_write), sdm_read=True)
        if self._open(0xAD, data[:7], data[7:], mode):
            raise Reject(LENGTH_ERROR)
        if offset >= f.size or offset + length > f.size:
            raise Reject(BOUNDARY_ERROR)
        end = f.size if length == 0 else offset + length
        view = self._file_view(f, "data", limit_sw=PERMISSION_DENIED, overflow_sw=INTEGRITY_ERROR)
        return self._ok(view[offset:end], mode)

    def _write_data(self, data: bytes) -> bytes:
        if len(data) < 7:
            raise Reject(LENGTH_ERROR)
        f = self._target_file(data[0])
        header, offset, length = data[:7], _u24(data[1:4]), _u24(data[4:7])
        ar = f.settings.access
        mode = self._access_mode(f, (ar.write, ar.read_write), sdm_read=False)
        if length == 0:
            raise Reject(PARAMETER_ERROR)
        if offset + length > f.size:
            raise Reject(BOUNDARY_ERROR)
        if self._session is None or mode is CommMode.PLAIN:
            expected = length
        elif mode is CommMode.MAC:
            expected = length + 8
        else:
            expected = (length // 16 + 1) * 16 + 8

        def finish(body: bytes) -> bytes:
            plain = self._open(0x8D, header, body, mode)
            if len(plain) != length:
                raise Reject(LENGTH_ERROR)
            f.data[offset : offset + length] = plain
            return self._ok(b"", mode)

        body = data[7:]
        if len(body) > expected:
            raise Reject(LENGTH_ERROR)
        if len(body) < expected:
            if mode is not CommMode.PLAIN and self._nvm.sm_config & 0x04:
                raise Reject(PERMISSION_DENIED)  # chained writing disabled (option 04h)
            self._pending = WritePending(bytearray(body), expected, finish)
            return sw_bytes(ADDITIONAL_FRAME)
        return finish(body)


def _u24(raw: bytes) -> int:
    return int.from_bytes(raw, "little")


_HANDLERS: Final[dict[int, Callable[[NativeCommands, bytes], bytes]]] = {
    0x71: NativeCommands._auth_first,
    0x77: NativeCommands._auth_non_first,
    0x60: NativeCommands._get_version,
    0x51: NativeCommands._get_card_uid,
    0x5C: NativeCommands._set_configuration,
    0x3C: NativeCommands._read_sig,
    0xC4: NativeCommands._change_key,
    0x64: NativeCommands._get_key_version,
    0xF5: NativeCommands._get_file_settings,
    0xF6: NativeCommands._get_file_counters,
    0x5F: NativeCommands._change_file_settings,
    0xAD: NativeCommands._read_data,
    0x8D: NativeCommands._write_data,
}
