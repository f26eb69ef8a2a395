"""Originality signature check: is this chip an NXP NTAG 424 DNA? (AN12196 §8.2)

The card signs its 7-byte UID once, in NXP's factory, with ECDSA over secp224r1; Read_Sig returns
the 56-byte ``r || s``. NXP hashes nothing: the raw UID *is* the message representative e
(AN12196 §8.2 Table 30 "ECDSA ... without hash"). ``cryptography`` only verifies pre-hashed
input of a hash's size, so the UID is left-padded with zeros to 28 bytes (SHA-224 size) —
which leaves the integer e unchanged, since ECDSA reads it big-endian.

A valid signature proves the chip is genuine, not that the card is the one you issued: it is
static, so a copy of UID + signature replays. SUN (keys) proves the rest.
"""

from __future__ import annotations

from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)

from station.ntag424.errors import UsageError

NXP_NTAG424_PUBLIC_KEY: Final = bytes.fromhex(
    "048A9B380AF2EE1B98DC417FECC263F8449C7625CECE82D9B916C992DA"
    "209D68422B81EC20B65A66B5102A61596AF3379200599316A00A1410"
)
"""NXP's originality public key for NTAG 424 DNA (uncompressed SEC1 point on secp224r1).

Published in AN12196 Rev 1.8 §8.2 Table 30 and listed for "NTAG424DNA" among the originality
keys of the Proxmark3 client (``client/src/cmdhfmfdes.c``)."""

SCALAR_LEN: Final = 28
SIGNATURE_LEN: Final = 2 * SCALAR_LEN


def _message(uid: bytes) -> bytes:
    if not 1 <= len(uid) <= SCALAR_LEN:
        raise UsageError("the UID must be 1..28 bytes (NTAG 424 DNA: 7)")
    return bytes(SCALAR_LEN - len(uid)) + uid


def load_public_key(sec1_point: bytes) -> ec.EllipticCurvePublicKey:
    """A secp224r1 public key from its SEC1 encoding (04 || X || Y, or compressed)."""
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP224R1(), sec1_point)
    except ValueError as exc:
        raise UsageError("not a secp224r1 public key point") from exc


def verify_originality(
    uid: bytes,
    signature: bytes,
    public_key: bytes | ec.EllipticCurvePublicKey = NXP_NTAG424_PUBLIC_KEY,
) -> bool:
    """``True`` when ``signature`` (r || s, 56 bytes) signs ``uid`` under ``public_key``.

    Pass a test key (bytes or a loaded key) to check an emulated card's signature.
    """
    if len(signature) != SIGNATURE_LEN:
        return False
    key = load_public_key(public_key) if isinstance(public_key, bytes) else public_key
    if not isinstance(key.curve, ec.SECP224R1):
        raise UsageError("NTAG 424 DNA originality signatures use secp224r1")
    r = int.from_bytes(signature[:SCALAR_LEN], "big")
    s = int.from_bytes(signature[SCALAR_LEN:], "big")
    if r == 0 or s == 0:
        return False
    try:
        key.verify(encode_dss_signature(r, s), _message(uid), ec.ECDSA(Prehashed(hashes.SHA224())))
    except InvalidSignature:
        return False
    return True


def sign_originality(private_key: ec.EllipticCurvePrivateKey, uid: bytes) -> bytes:
    """Sign ``uid`` as NXP's factory does (for emulated cards and tests): r || s, 56 bytes."""
    if not isinstance(private_key.curve, ec.SECP224R1):
        raise UsageError("NTAG 424 DNA originality signatures use secp224r1")
    der = private_key.sign(_message(uid), ec.ECDSA(Prehashed(hashes.SHA224())))
    r, s = decode_dss_signature(der)
    return r.to_bytes(SCALAR_LEN, "big") + s.to_bytes(SCALAR_LEN, "big")
