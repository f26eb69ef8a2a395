"""Card-side EV2 secure messaging: what the PICC checks on a command and adds to a response.

The mirror image of the reader's session (NT4H2421Gx §9.1): the card verifies the command MAC
with the *current* CmdCtr, decrypts CmdData with IVc built from that same value, then
increments CmdCtr before it MACs (and encrypts, with IVr) the response (§9.1.2, §9.1.4).
Every command counts, plain ones included (§9.1.8); a command arriving when CmdCtr is FFFFh is
treated like a bad MAC (§9.1.2).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from station.emulator.files import CommMode
from station.emulator.status import INTEGRITY_ERROR, LENGTH_ERROR, Reject
from station.ntag424 import crypto

MAC_LEN = 8
_IV_CMD = b"\xa5\x5a"
_IV_RESP = b"\x5a\xa5"


@dataclass
class CardSession:
    """An EV2 authenticated state: which key, TI, session keys, CmdCtr."""

    key_no: int
    ti: bytes
    k_enc: bytes
    k_mac: bytes
    cmd_ctr: int = 0

    def _iv(self, label: bytes, ctr: int) -> bytes:
        block = label + self.ti + ctr.to_bytes(2, "little") + bytes(8)
        return crypto.aes_ecb_encrypt(self.k_enc, block)

    def open_command(self, cmd: int, header: bytes, body: bytes, mode: CommMode) -> bytes:
        """Check and unwrap one command's data field; returns the plain CmdData.

        ``body`` is everything after the plain CmdHeader. In MAC and full mode its last 8 bytes
        are the MACt; in full mode the rest is E(SesAuthENCKey, CmdData || padding), which may
        be empty for commands that carry no data (ReadData, GetCardUID).
        """
        if self.cmd_ctr >= 0xFFFF:
            raise Reject(INTEGRITY_ERROR)
        if mode is CommMode.PLAIN:
            self.cmd_ctr += 1
            return body
        if len(body) < MAC_LEN:
            raise Reject(LENGTH_ERROR)
        payload, mac = body[:-MAC_LEN], body[-MAC_LEN:]
        ctr = self.cmd_ctr.to_bytes(2, "little")
        expected = crypto.mact(self.k_mac, bytes([cmd]) + ctr + self.ti + header + payload)
        if not hmac.compare_digest(expected, mac):
            raise Reject(INTEGRITY_ERROR)
        plain = payload
        if mode is CommMode.FULL and payload:
            if len(payload) % crypto.BLOCK:
                raise Reject(LENGTH_ERROR)
            padded = crypto.aes_cbc_decrypt(self.k_enc, self._iv(_IV_CMD, self.cmd_ctr), payload)
            try:
                plain = crypto.unpad_m2(padded)
            except ValueError:
                raise Reject(INTEGRITY_ERROR) from None
        self.cmd_ctr += 1
        return plain

    def seal_response(self, data: bytes, mode: CommMode) -> bytes:
        """Protect response data with the already incremented CmdCtr (return code 00)."""
        if mode is CommMode.PLAIN:
            return data
        if mode is CommMode.FULL and data:
            iv = self._iv(_IV_RESP, self.cmd_ctr)
            data = crypto.aes_cbc_encrypt(self.k_enc, iv, crypto.pad_m2(data))
        ctr = self.cmd_ctr.to_bytes(2, "little")
        return data + crypto.mact(self.k_mac, b"\x00" + ctr + self.ti + data)


def session_keys(key: bytes, rnd_a: bytes, rnd_b: bytes) -> tuple[bytes, bytes]:
    """(SesAuthENCKey, SesAuthMACKey) per §9.1.7."""
    k_enc = crypto.cmac(key, crypto.auth_session_vector(crypto.SV_AUTH_ENC, rnd_a, rnd_b))
    k_mac = crypto.cmac(key, crypto.auth_session_vector(crypto.SV_AUTH_MAC, rnd_a, rnd_b))
    return k_enc, k_mac
