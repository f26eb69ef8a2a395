"""Originality signature (AN12196 §8.2 Table 30): ECDSA secp224r1 over the raw UID."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)
from published import VECTORS

from station.ntag424.errors import UsageError
from station.ntag424.signature import (
    NXP_NTAG424_PUBLIC_KEY,
    load_public_key,
    sign_originality,
    verify_originality,
)

T30 = next(v for v in VECTORS if v["id"] == "an12196-t30-originality-signature")["inputs"]
UID = bytes.fromhex(T30["uid"])
SIG = bytes.fromhex(T30["signature_r_s"])


def point_of(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The uncompressed SEC1 point of ``key``'s public half, as the API takes keys."""
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def test_nxp_key_is_the_published_one() -> None:
    assert bytes.fromhex(T30["public_key_sec1"]) == NXP_NTAG424_PUBLIC_KEY


def test_nxp_example_verifies_with_nxp_key() -> None:
    assert verify_originality(UID, SIG)


@pytest.mark.parametrize("index", [0, 27, 28, 55])
def test_any_flipped_signature_bit_fails(index: int) -> None:
    bad = bytearray(SIG)
    bad[index] ^= 0x01
    assert not verify_originality(UID, bytes(bad))


def test_other_uid_fails() -> None:
    assert not verify_originality(bytes.fromhex("04518DFAA96181"), SIG)


def test_hashing_the_uid_is_not_what_nxp_does() -> None:
    """A signature over SHA-224(UID) must not pass: the UID is used raw."""
    key = ec.generate_private_key(ec.SECP224R1())
    der = key.sign(UID, ec.ECDSA(hashes.SHA224()))
    r, s = decode_dss_signature(der)
    hashed_sig = r.to_bytes(28, "big") + s.to_bytes(28, "big")
    assert not verify_originality(UID, hashed_sig, point_of(key))


def test_wrong_lengths_and_zero_scalars_fail() -> None:
    assert not verify_originality(UID, SIG[:-1])
    assert not verify_originality(UID, bytes(56))


def test_test_key_pair_round_trip() -> None:
    key = ec.generate_private_key(ec.SECP224R1())
    uid = bytes.fromhex("04A39493CC8680")
    sig = sign_originality(key.private_numbers().private_value, uid)
    assert len(sig) == 56
    point = point_of(key)
    assert verify_originality(uid, sig, point)
    # cryptography itself, independent of our wrapper, accepts the signature
    r, s = int.from_bytes(sig[:28], "big"), int.from_bytes(sig[28:], "big")
    prehashed = ec.ECDSA(Prehashed(hashes.SHA224()))
    key.public_key().verify(encode_dss_signature(r, s), bytes(21) + uid, prehashed)
    assert not verify_originality(uid, sig)  # not NXP's key


def test_bad_keys_are_usage_errors() -> None:
    with pytest.raises(UsageError):
        load_public_key(b"\x04" + bytes(56))
    with pytest.raises(UsageError):
        verify_originality(UID, SIG, point_of(ec.generate_private_key(ec.SECP256R1())))
