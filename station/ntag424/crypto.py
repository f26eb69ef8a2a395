"""AES primitives for NTAG 424 DNA, fenced off in one module.

Everything here is raw and dangerous on its own (ECB, unauthenticated CBC, MAC truncation);
the SUN verifier and the secure-messaging session are the only intended callers. All functions
take and return ``bytes`` and hold no state beyond what is passed in, so NXP's worked examples
(AN12196) replay byte for byte.

Formulas: NIST SP 800-38B (AES-CMAC), ISO/IEC 9797-1 padding method 2 (AN12196 §5.4),
MACt truncation (NT4H2421Gx datasheet §9.1.3, MAC calculation: the "even-numbered bytes"
counted from the least significant end, i.e. indices 1, 3, …, 15 of the big-endian string;
AN12196 §5.3 Table 8 shows it worked through).
"""

from __future__ import annotations

import zlib
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

BLOCK: Final = 16
ZERO_IV: Final = bytes(BLOCK)


def _check_key(key: bytes) -> None:
    if len(key) != 16:
        raise ValueError(f"AES-128 key must be 16 bytes, got {len(key)}")


def aes_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    """Encrypt whole blocks with AES-128-ECB (used for IV derivation, one block at a time)."""
    _check_key(key)
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(data) + enc.finalize()


def aes_ecb_decrypt(key: bytes, data: bytes) -> bytes:
    _check_key(key)
    dec = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    return dec.update(data) + dec.finalize()


def aes_cbc_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-128-CBC without padding; ``data`` must already be a multiple of 16 bytes."""
    _check_key(key)
    if len(data) % BLOCK:
        raise ValueError("CBC input must be a multiple of 16 bytes; pad it first")
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return enc.update(data) + enc.finalize()


def aes_cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    _check_key(key)
    if len(data) % BLOCK:
        raise ValueError("CBC input must be a multiple of 16 bytes")
    dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return dec.update(data) + dec.finalize()


def cmac(key: bytes, message: bytes) -> bytes:
    """Full 16-byte AES-CMAC (SP 800-38B); the empty message is allowed."""
    _check_key(key)
    c = CMAC(algorithms.AES(key))
    c.update(message)
    return c.finalize()


def truncate_mac(full_mac: bytes) -> bytes:
    """NXP's MACt: bytes 1, 3, 5, …, 15 of the 16-byte CMAC (datasheet §9.1.3)."""
    if len(full_mac) != BLOCK:
        raise ValueError("MACt truncates a 16-byte CMAC")
    return full_mac[1::2]


def mact(key: bytes, message: bytes) -> bytes:
    """Truncated CMAC as used in secure messaging and SDMMAC."""
    return truncate_mac(cmac(key, message))


def pad_m2(data: bytes) -> bytes:
    """ISO/IEC 9797-1 method 2: always append 0x80, then zeros to a multiple of 16.

    Data that is already block-aligned gains a whole extra block (AN12196 Table 9).
    """
    padded = data + b"\x80"
    return padded + bytes(-len(padded) % BLOCK)


def unpad_m2(data: bytes) -> bytes:
    """Strip method-2 padding; raises ``ValueError`` if it is malformed."""
    if not data or len(data) % BLOCK:
        raise ValueError("padded data must be a non-empty multiple of 16 bytes")
    stripped = data.rstrip(b"\x00")
    if not stripped or stripped[-1] != 0x80 or len(data) - len(stripped) >= BLOCK:
        raise ValueError("bad ISO/IEC 9797-1 method 2 padding")
    return stripped[:-1]


def crc32nk(data: bytes) -> bytes:
    """CRC32 as NXP uses it in ChangeKey: IEEE 802.3 polynomial without the final inversion.

    ``zlib.crc32`` applies the final XOR with 0xFFFFFFFF; undo it. Little-endian output.
    """
    return ((zlib.crc32(data) ^ 0xFFFFFFFF) & 0xFFFFFFFF).to_bytes(4, "little")


def rotate_left(data: bytes, n: int = 1) -> bytes:
    """Rotate a byte string left by ``n`` bytes (RndB' = rotl1(RndB))."""
    n %= len(data) or 1
    return data[n:] + data[:n]


def rotate_right(data: bytes, n: int = 1) -> bytes:
    n %= len(data) or 1
    return data[-n:] + data[:-n]


def xor(a: bytes, b: bytes) -> bytes:
    if len(a) != len(b):
        raise ValueError("xor of unequal lengths")
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def sdm_session_vector(label: bytes, uid: bytes, read_ctr_le: bytes) -> bytes:
    """SV1/SV2 for SUN session keys (AN12196 §4.3): label || 0001 0080 || UID || ctr, 0-padded.

    Only the fields that are mirrored go in: pass ``b""`` for a UID or counter that the card
    does not mirror.
    """
    sv = label + b"\x00\x01\x00\x80" + uid + read_ctr_le
    return sv + bytes(-len(sv) % BLOCK)


SV_SDM_ENC: Final = b"\xc3\x3c"
SV_SDM_MAC: Final = b"\x3c\xc3"
SV_AUTH_ENC: Final = b"\xa5\x5a"
SV_AUTH_MAC: Final = b"\x5a\xa5"


def auth_session_vector(label: bytes, rnd_a: bytes, rnd_b: bytes) -> bytes:
    """SV1/SV2 for EV2 session keys (datasheet §9.1.7, AN12196 Table 14 steps 13-14).

    label || 0001 0080 || RndA[0:2] || (RndA[2:8] xor RndB[0:6]) || RndB[6:16] || RndA[8:16].
    NXP writes RndA[15..14] for what is RndA[0:2] in big-endian Python indexing.
    """
    if len(rnd_a) != BLOCK or len(rnd_b) != BLOCK:
        raise ValueError("RndA and RndB are 16 bytes")
    return (
        label
        + b"\x00\x01\x00\x80"
        + rnd_a[0:2]
        + xor(rnd_a[2:8], rnd_b[0:6])
        + rnd_b[6:16]
        + rnd_a[8:16]
    )
