"""Originality signature check: is this chip an NXP NTAG 424 DNA? (AN12196 §8.2)

The card signs its 7-byte UID once, in NXP's factory, with ECDSA over secp224r1; Read_Sig returns
the 56-byte ``r || s``. NXP hashes nothing: the raw UID *is* the message representative e
(AN12196 §8.2 Table 30 "ECDSA ... without hash"), left-padded with zeros to 28 bytes — which
leaves the integer e unchanged, since ECDSA reads it big-endian. The ECDSA itself is
:func:`station.ntag424.crypto.ecdsa_secp224r1_verify`.

A valid signature proves the chip is genuine, not that the card is the one you issued: it is
static, so a copy of UID + signature replays. SUN (keys) proves the rest.
"""

from __future__ import annotations

from typing import Final

from station.ntag424 import crypto
from station.ntag424.errors import UsageError

NXP_NTAG424_PUBLIC_KEY: Final = bytes.fromhex(
    "048A9B380AF2EE1B98DC417FECC263F8449C7625CECE82D9B916C992DA"
    "209D68422B81EC20B65A66B5102A61596AF3379200599316A00A1410"
)
"""NXP's originality public key for NTAG 424 DNA (uncompressed SEC1 point on secp224r1).

Published in AN12196 Rev 1.8 §8.2 Table 30 and listed for "NTAG424DNA" among the originality
keys of the Proxmark3 client (``client/src/cmdhfmfdes.c``)."""

SCALAR_LEN: Final = crypto.SECP224R1_SCALAR_LEN
SIGNATURE_LEN: Final = 2 * SCALAR_LEN


def _message(uid: bytes) -> bytes:
    if not 1 <= len(uid) <= SCALAR_LEN:
        raise UsageError("the UID must be 1..28 bytes (NTAG 424 DNA: 7)")
    return bytes(SCALAR_LEN - len(uid)) + uid


def load_public_key(sec1_point: bytes) -> bytes:
    """``sec1_point`` checked to be a secp224r1 point (04 || X || Y, or compressed)."""
    try:
        crypto.check_secp224r1_point(bytes(sec1_point))
    except ValueError as exc:
        raise UsageError("not a secp224r1 public key point") from exc
    return bytes(sec1_point)


def verify_originality(
    uid: bytes, signature: bytes, public_key: bytes = NXP_NTAG424_PUBLIC_KEY
) -> bool:
    """``True`` when ``signature`` (r || s, 56 bytes) signs ``uid`` under ``public_key``.

    Pass a test key (a SEC1 point) to check an emulated card's signature; a key that is not
    a secp224r1 point raises :class:`UsageError`.
    """
    message = _message(uid)
    point = load_public_key(public_key)
    if len(signature) != SIGNATURE_LEN:
        return False
    return crypto.ecdsa_secp224r1_verify(point, message, signature)


def sign_originality(private_scalar: int, uid: bytes) -> bytes:
    """Sign ``uid`` as NXP's factory does (for emulated cards and tests): r || s, 56 bytes."""
    try:
        return crypto.ecdsa_secp224r1_sign(private_scalar, _message(uid))
    except ValueError as exc:  # a scalar outside 1..n-1
        raise UsageError("not a secp224r1 private key") from exc
