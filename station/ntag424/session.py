"""EV2 authentication and secure messaging as pure state machines (AES mode only).

Nothing here touches a reader or a clock: each step takes the card's R-APDU and returns the next
C-APDU, and RndA is passed in, so NXP's worked examples replay byte for byte
(AN12196 §6.6 Table 14, §6.10 Table 20, §6.14 Table 24; secure messaging §5.3-§5.4).

Rules that are easy to get wrong (NT4H2421Gx datasheet §9.1.2-§9.1.11):

* AuthenticateEV2First starts a transaction: new TI, CmdCtr = 0. AuthenticateEV2NonFirst only
  renews the session keys: TI and CmdCtr carry over.
* CmdCtr (16 bits, LSB first) is used as-is in the command MAC and IVc, then incremented for
  every command answered while authenticated — plain ones too; the response MAC and IVr use the
  incremented value.
* The response MAC is checked before any response data is decrypted or trusted.
* Any error status ends the authenticated state on the card, so it ends the session here too.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Final

from station.ntag424 import crypto
from station.ntag424.apdu import (
    SW_MORE_FRAMES,
    SW_OK_NATIVE,
    Ins,
    Response,
    native,
)
from station.ntag424.errors import ProtocolError, UsageError, card_error
from station.ntag424.filesettings import CommMode

MACT_LEN: Final = 8
_IV_CMD: Final = b"\xa5\x5a"
_IV_RESP: Final = b"\x5a\xa5"
_MAX_CTR: Final = 0xFFFF


def _check_key(key: bytes) -> None:
    if len(key) != 16:
        raise UsageError("AES-128 keys are 16 bytes")


def _check_key_no(key_no: int) -> None:
    if not 0 <= key_no <= 4:
        raise UsageError("NTAG 424 DNA application keys are numbered 0..4")


@dataclass
class Session:
    """An authenticated EV2 secure-messaging session. Mutable: CmdCtr moves on each command.

    The key material is kept out of ``repr`` so a session never leaks into a log line.
    """

    key_no: int
    k_enc: bytes = field(repr=False)
    k_mac: bytes = field(repr=False)
    ti: bytes
    cmd_ctr: int = 0
    active: bool = True

    # -- IVs and MACs (AN12196 §5.3, §5.4) ------------------------------------------------
    def _ctr(self, value: int) -> bytes:
        return value.to_bytes(2, "little")

    def iv_command(self) -> bytes:
        """IVc = E(KSesAuthENC, A55A || TI || CmdCtr || 0^8)."""
        return crypto.aes_ecb_encrypt(
            self.k_enc, _IV_CMD + self.ti + self._ctr(self.cmd_ctr) + bytes(8)
        )

    def iv_response(self) -> bytes:
        """IVr = E(KSesAuthENC, 5AA5 || TI || CmdCtr+1 || 0^8)."""
        return crypto.aes_ecb_encrypt(
            self.k_enc, _IV_RESP + self.ti + self._ctr(self.cmd_ctr + 1) + bytes(8)
        )

    def command_mac_input(self, ins: int, header: bytes, enc_data: bytes) -> bytes:
        """Cmd || CmdCtr || TI || CmdHeader || E(CmdData) (AN12196 Table 9 step 12)."""
        return bytes([ins]) + self._ctr(self.cmd_ctr) + self.ti + header + enc_data

    def response_mac_input(self, sw2: int, enc_data: bytes) -> bytes:
        """RC || CmdCtr+1 || TI || E(RespData) (AN12196 Table 8; no Cmd byte, see errata)."""
        return bytes([sw2]) + self._ctr(self.cmd_ctr + 1) + self.ti + enc_data

    def command_mac(self, ins: int, header: bytes, enc_data: bytes) -> bytes:
        """MACt(KSesAuthMAC, command MAC input)."""
        return crypto.mact(self.k_mac, self.command_mac_input(ins, header, enc_data))

    def response_mac(self, sw2: int, enc_data: bytes) -> bytes:
        """MACt(KSesAuthMAC, response MAC input)."""
        return crypto.mact(self.k_mac, self.response_mac_input(sw2, enc_data))

    def encrypt_command_data(self, data: bytes) -> bytes:
        if not data:
            return b""
        return crypto.aes_cbc_encrypt(self.k_enc, self.iv_command(), crypto.pad_m2(data))

    # -- one command, both directions ----------------------------------------------------
    def _require_active(self) -> None:
        if not self.active:
            raise UsageError("the session has ended; authenticate again")
        if self.cmd_ctr >= _MAX_CTR:
            raise UsageError("CmdCtr is exhausted; authenticate again with EV2First")

    def wrap(self, ins: int, header: bytes, data: bytes, mode: CommMode) -> bytes:
        """Build the C-APDU of a native command in ``mode`` (header always stays plain)."""
        self._require_active()
        if mode is CommMode.PLAIN:
            return native(ins, header + data)
        if mode is CommMode.MAC:
            body = header + data
            return native(ins, body + self.command_mac(ins, header, data))
        enc = self.encrypt_command_data(data)
        return native(ins, header + enc + self.command_mac(ins, header, enc))

    def unwrap(
        self, r_apdu: bytes, mode: CommMode, command: str, *, expect_mac: bool = True
    ) -> bytes:
        """Check and decode the answer to the command just wrapped; CmdCtr += 1.

        ``expect_mac=False`` is for ChangeKey of the authenticated key: the card answers a bare
        ``91 00`` and ends the session.
        """
        self._require_active()
        resp = Response.parse(r_apdu)
        if resp.sw == SW_MORE_FRAMES:
            self.active = False
            raise UsageError(f"{command}: chained answers are not supported while authenticated")
        if resp.sw != SW_OK_NATIVE:
            self.active = False  # datasheet §9.1.2: an error resets the authenticated state
            raise card_error(resp.sw, command)
        if mode is CommMode.PLAIN or not expect_mac:
            if not expect_mac and resp.data:
                self.active = False
                raise ProtocolError(f"{command}: expected a bare 9100, got {len(resp.data)} bytes")
            self.cmd_ctr += 1
            return resp.data
        if len(resp.data) < MACT_LEN:
            self.active = False
            raise ProtocolError(f"{command}: answer too short to carry a MAC")
        body, mac = resp.data[:-MACT_LEN], resp.data[-MACT_LEN:]
        if not hmac.compare_digest(mac, self.response_mac(resp.sw2, body)):
            self.active = False
            raise ProtocolError(f"{command}: response MAC does not verify (wrong key or tampering)")
        if mode is CommMode.MAC or not body:
            self.cmd_ctr += 1
            return body
        if len(body) % crypto.BLOCK:
            self.active = False
            raise ProtocolError(f"{command}: encrypted answer is not whole AES blocks")
        plain = crypto.aes_cbc_decrypt(self.k_enc, self.iv_response(), body)
        try:
            data = crypto.unpad_m2(plain)
        except ValueError as exc:
            self.active = False
            raise ProtocolError(f"{command}: bad padding in the decrypted answer") from exc
        self.cmd_ctr += 1
        return data

    def end(self) -> None:
        self.active = False


def _session_keys(key: bytes, rnd_a: bytes, rnd_b: bytes) -> tuple[bytes, bytes]:
    sv1 = crypto.auth_session_vector(crypto.SV_AUTH_ENC, rnd_a, rnd_b)
    sv2 = crypto.auth_session_vector(crypto.SV_AUTH_MAC, rnd_a, rnd_b)
    return crypto.cmac(key, sv1), crypto.cmac(key, sv2)


class _Ev2Handshake:
    """The part the two EV2 authentications share: RndB recovery and the 32-byte challenge."""

    ins: int
    name: str

    def __init__(self, key_no: int, key: bytes, rnd_a: bytes) -> None:
        _check_key_no(key_no)
        _check_key(key)
        if len(rnd_a) != 16:
            raise UsageError("RndA is 16 bytes")
        self.key_no = key_no
        self._key = key
        self.rnd_a = rnd_a
        self.rnd_b: bytes | None = None

    def command2(self, r_apdu1: bytes) -> bytes:
        """Decrypt RndB from part 1's answer; return ``90 AF`` with E(K, RndA || RndB')."""
        resp = Response.parse(r_apdu1).check(self.name, (SW_MORE_FRAMES,))
        if len(resp.data) != 16:
            raise ProtocolError(f"{self.name}: part 1 answer must be 16 bytes")
        self.rnd_b = crypto.aes_cbc_decrypt(self._key, crypto.ZERO_IV, resp.data)
        challenge = self.rnd_a + crypto.rotate_left(self.rnd_b)
        return native(
            Ins.ADDITIONAL_FRAME, crypto.aes_cbc_encrypt(self._key, crypto.ZERO_IV, challenge)
        )

    def _part2(self, r_apdu2: bytes, length: int) -> bytes:
        if self.rnd_b is None:
            raise UsageError("call command2 with the answer to part 1 first")
        resp = Response.parse(r_apdu2).check(self.name)
        if len(resp.data) != length:
            raise ProtocolError(f"{self.name}: part 2 answer must be {length} bytes")
        return crypto.aes_cbc_decrypt(self._key, crypto.ZERO_IV, resp.data)

    def _check_rnd_a(self, rnd_a_rot: bytes) -> None:
        if not hmac.compare_digest(crypto.rotate_right(rnd_a_rot), self.rnd_a):
            raise ProtocolError(f"{self.name}: card did not prove the key (RndA' mismatch)")


class AuthenticateEV2First(_Ev2Handshake):
    """AuthenticateEV2First (datasheet §10.4.1; AN12196 Table 14).

    ``command1()`` → card → ``command2(r1)`` → card → ``finish(r2)`` gives a :class:`Session`
    with a new TI and CmdCtr = 0.
    """

    ins = Ins.AUTHENTICATE_EV2_FIRST
    name = "AuthenticateEV2First"

    def __init__(self, key_no: int, key: bytes, rnd_a: bytes, pcd_cap2: bytes = b"") -> None:
        super().__init__(key_no, key, rnd_a)
        if len(pcd_cap2) > 6:
            raise UsageError("PCDcap2 is at most 6 bytes")
        self.pcd_cap2 = pcd_cap2
        self.pd_cap2: bytes | None = None

    def command1(self) -> bytes:
        """``90 71 00 00 Lc KeyNo LenCap [PCDcap2] 00``."""
        return native(self.ins, bytes([self.key_no, len(self.pcd_cap2)]) + self.pcd_cap2)

    def finish(self, r_apdu2: bytes) -> Session:
        """Check E(K, TI || RndA' || PDcap2 || PCDcap2) and derive the session keys."""
        plain = self._part2(r_apdu2, 32)
        ti, rnd_a_rot = plain[0:4], plain[4:20]
        self._check_rnd_a(rnd_a_rot)
        self.pd_cap2 = plain[20:26]
        assert self.rnd_b is not None
        k_enc, k_mac = _session_keys(self._key, self.rnd_a, self.rnd_b)
        return Session(key_no=self.key_no, k_enc=k_enc, k_mac=k_mac, ti=ti, cmd_ctr=0)


class AuthenticateEV2NonFirst(_Ev2Handshake):
    """AuthenticateEV2NonFirst (datasheet §10.4.2; AN12196 Table 24).

    Renews the session keys for ``key_no`` inside the running transaction: TI and CmdCtr of
    ``previous`` carry over, and ``previous`` ends.
    """

    ins = Ins.AUTHENTICATE_EV2_NON_FIRST
    name = "AuthenticateEV2NonFirst"

    def __init__(self, key_no: int, key: bytes, rnd_a: bytes, previous: Session) -> None:
        super().__init__(key_no, key, rnd_a)
        if not previous.active:
            raise UsageError("AuthenticateEV2NonFirst needs an active session; use EV2First")
        self.previous = previous

    def command1(self) -> bytes:
        """``90 77 00 00 01 KeyNo 00``: no capabilities in the non-first variant."""
        return native(self.ins, bytes([self.key_no]))

    def command2(self, r_apdu1: bytes) -> bytes:
        try:
            return super().command2(r_apdu1)
        except Exception:
            self.previous.end()
            raise

    def finish(self, r_apdu2: bytes) -> Session:
        try:
            plain = self._part2(r_apdu2, 16)
            self._check_rnd_a(plain)
        finally:
            self.previous.end()
        assert self.rnd_b is not None
        k_enc, k_mac = _session_keys(self._key, self.rnd_a, self.rnd_b)
        return Session(
            key_no=self.key_no,
            k_enc=k_enc,
            k_mac=k_mac,
            ti=self.previous.ti,
            cmd_ctr=self.previous.cmd_ctr,
        )
