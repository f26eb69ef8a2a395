"""AES primitives for NTAG 424 DNA, fenced off in one module.

Everything here is raw and dangerous on its own (ECB, unauthenticated CBC, MAC truncation);
the SUN verifier and the secure-messaging session are the only intended callers. All functions
take and return ``bytes`` and hold no state beyond what is passed in, so NXP's worked examples
(AN12196) replay byte for byte.

This is the only module of the project that imports ``cryptography.hazmat`` (a test walks the
sources to keep it so): the SUN verifiers, the secure-messaging session, the originality
signature check and the emulated card all get their AES, CMAC and ECDSA from here.

Formulas: NIST SP 800-38B (AES-CMAC), ISO/IEC 9797-1 padding method 2 (AN12196 §5.4),
MACt truncation (NT4H2421Gx datasheet §9.1.3, MAC calculation: the "even-numbered bytes"
counted from the least significant end, i.e. indices 1, 3, …, 15 of the big-endian string;
AN12196 §5.3 Table 8 shows it worked through).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

BLOCK: Final = 16
ZERO_IV: Final = bytes(BLOCK)
_R128: Final = 0x87  # GF(2^128) reduction constant of SP 800-38B
_MASK128: Final = (1 << 128) - 1


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


def gf128_double(value: int) -> int:
    """Multiply by x in GF(2^128) (SP 800-38B subkey step): a shift and a conditional xor."""
    value <<= 1
    if value >> 128:
        value = (value & _MASK128) ^ _R128
    return value


def cmac_subkeys(key: bytes) -> tuple[bytes, bytes, bytes]:
    """(L, K1, K2) of AES-CMAC under ``key`` (SP 800-38B §6.1), for precomputation and tests."""
    _check_key(key)
    ell = aes_ecb_encrypt(key, bytes(BLOCK))
    k1 = gf128_double(int.from_bytes(ell, "big"))
    k2 = gf128_double(k1)
    return ell, k1.to_bytes(16, "big"), k2.to_bytes(16, "big")


# ---------------------------------------------------------------------------------------------
# Cached contexts for hot loops. Each call of these functions builds a context once; the
# functions they return are cheap per call but trust their input: exactly one 16-byte block
# (a reused ECB context would buffer a short block into the next call) and 16-byte keys.


def ecb_block_encryptor(key: bytes) -> Callable[[bytes], bytes]:
    """``E(key, block)`` on a cached AES-128-ECB context; feed it exactly 16 bytes a call."""
    _check_key(key)
    update: Callable[[bytes], bytes] = (
        Cipher(algorithms.AES(bytes(key)), modes.ECB()).encryptor().update
    )
    return update


def ecb_block_decryptor(key: bytes) -> Callable[[bytes], bytes]:
    """``D(key, block)`` on a cached AES-128-ECB context (one block: CBC with a zero IV)."""
    _check_key(key)
    update: Callable[[bytes], bytes] = (
        Cipher(algorithms.AES(bytes(key)), modes.ECB()).decryptor().update
    )
    return update


def fresh_key_cmacs() -> tuple[Callable[[bytes], bytes], Callable[[bytes, bytes], bytes]]:
    """(``cmac_empty(key)``, ``cmac_of(key, message)``): full CMACs under a key that changes
    every call (a SUN session key), cheaper than :func:`cmac`.

    The cheapest fresh-key AES ``cryptography`` offers is one CMAC object built on an
    ``AES128`` holder whose key is replaced per call (CMAC copies the key when built). The
    holder belongs to the returned pair alone: not thread-safe, give each thread its own.
    Keys are not checked: the callers pass session keys they derived themselves.
    """
    holder = algorithms.AES128(bytes(BLOCK))
    new = CMAC

    def cmac_empty(key: bytes) -> bytes:
        holder.key = key
        return new(holder).finalize()

    def cmac_of(key: bytes, message: bytes) -> bytes:
        holder.key = key
        c = new(holder)
        if message:
            c.update(message)
        return c.finalize()

    return cmac_empty, cmac_of


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


# ---------------------------------------------------------------------------------------------
# ECDSA on secp224r1, as NXP's originality signature uses it (AN12196 §8.2): the message is
# not hashed; the caller passes the 28-byte message representative (UID left-padded with
# zeros). ``cryptography`` signs pre-hashed input of a hash's size, so SHA-224's size it is.
# The asymmetric half of ``cryptography`` is imported when first used: it costs ~10 ms of
# start-up that ``station sun verify`` (AES and CMAC only) should not pay.

SECP224R1_SCALAR_LEN: Final = 28


def _ecdsa_raw(*, deterministic: bool = False) -> ec.ECDSA:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    return ec.ECDSA(Prehashed(hashes.SHA224()), deterministic_signing=deterministic)


def _public_key(point: bytes) -> ec.EllipticCurvePublicKey:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP224R1(), point)


def _check_message(e: bytes) -> None:
    if len(e) != SECP224R1_SCALAR_LEN:
        raise ValueError("the secp224r1 message representative is 28 bytes")


def _private_key(scalar: int) -> ec.EllipticCurvePrivateKey:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.derive_private_key(scalar, ec.SECP224R1())


def secp224r1_public_point(private_scalar: int) -> bytes:
    """The uncompressed SEC1 point (04 || X || Y, 57 bytes) of a secp224r1 private scalar."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = _private_key(private_scalar).public_key()
    return public.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def check_secp224r1_point(public_point: bytes) -> None:
    """Raise ``ValueError`` unless ``public_point`` is a SEC1-encoded point on secp224r1."""
    _public_key(public_point)


def ecdsa_secp224r1_sign(private_scalar: int, e: bytes) -> bytes:
    """r || s (56 bytes) over the raw 28-byte ``e``, deterministic (RFC 6979), like a
    signature burnt in at production."""
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    _check_message(e)
    der = _private_key(private_scalar).sign(e, _ecdsa_raw(deterministic=True))
    r, s = decode_dss_signature(der)
    return r.to_bytes(SECP224R1_SCALAR_LEN, "big") + s.to_bytes(SECP224R1_SCALAR_LEN, "big")


def ecdsa_secp224r1_verify(public_point: bytes, e: bytes, signature: bytes) -> bool:
    """``True`` when ``signature`` (r || s, 56 bytes) signs the raw 28-byte ``e``.

    Raises ``ValueError`` when ``public_point`` is not a point on secp224r1 (a usage error,
    not a bad signature).
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    _check_message(e)
    key = _public_key(public_point)
    if len(signature) != 2 * SECP224R1_SCALAR_LEN:
        return False
    r = int.from_bytes(signature[:SECP224R1_SCALAR_LEN], "big")
    s = int.from_bytes(signature[SECP224R1_SCALAR_LEN:], "big")
    if r == 0 or s == 0:
        return False
    try:
        key.verify(encode_dss_signature(r, s), e, _ecdsa_raw())
    except InvalidSignature:
        return False
    return True
