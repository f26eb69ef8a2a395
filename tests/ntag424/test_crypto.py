"""The AES primitives of ``station.ntag424.crypto`` against published values.

Vectors come from ``tests/vectors/ntag424-public-vectors.json`` (NXP AN12196, BTCPay
BoltCardTools) and RFC 4493 §4 (AES-CMAC examples); properties cover what no table lists.
"""

from __future__ import annotations

import zlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from published import VECTORS

from station.ntag424 import crypto
from station.ntag424.crypto import cmac_subkeys
from station.ntag424.sun import sdm_session_keys


def of_kind(kind: str) -> list[Any]:
    found = [pytest.param(v, id=v["id"]) for v in VECTORS if v["kind"] == kind]
    assert found, f"no {kind} vectors in the file"
    return found


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# RFC 4493 §4 (= NIST SP 800-38B D.1): key, subkeys and two CMAC examples.
RFC4493_KEY = h("2b7e151628aed2a6abf7158809cf4f3c")


def test_rfc4493_subkeys() -> None:
    ell, k1, k2 = cmac_subkeys(RFC4493_KEY)
    assert ell == h("7df76b0c1ab899b33e42f047b91b546f")
    assert k1 == h("fbeed618357133667c85e08f7236a8de")
    assert k2 == h("f7ddac306ae266ccf90bc11ee46d513b")


@pytest.mark.parametrize(
    ("message", "mac"),
    [
        ("", "bb1d6929e95937287fa37d129b756746"),
        ("6bc1bee22e409f96e93d7e117393172a", "070a16b46b4d4144f79bdd9dd04a287c"),
    ],
)
def test_rfc4493_cmac(message: str, mac: str) -> None:
    assert crypto.cmac(RFC4493_KEY, h(message)) == h(mac)


@pytest.mark.parametrize("vector", of_kind("cmac_internals"))
def test_an12196_zero_length_cmac_internals(vector: dict[str, Any]) -> None:
    key, exp = h(vector["inputs"]["key"]), vector["expected"]
    ell, k1, k2 = cmac_subkeys(key)
    assert (ell, k1, k2) == (h(exp["L"]), h(exp["K1"]), h(exp["K2"]))
    last = crypto.xor(crypto.pad_m2(b""), k2)
    assert last == h(exp["last_block"])
    # The CMAC of the empty message is one encryption of that last block.
    assert crypto.aes_ecb_encrypt(key, last) == h(exp["cmac"])
    assert crypto.cmac(key, h(vector["inputs"]["message"])) == h(exp["cmac"])
    assert crypto.mact(key, b"") == h(exp["mact"])


@pytest.mark.parametrize("vector", of_kind("sdm_session_keys"))
def test_sdm_session_keys(vector: dict[str, Any]) -> None:
    inp, exp = vector["inputs"], vector["expected"]
    uid, ctr = h(inp["uid"]), h(inp["sdm_read_ctr_le"])
    assert crypto.sdm_session_vector(crypto.SV_SDM_ENC, uid, ctr) == h(exp["sv1"])
    assert crypto.sdm_session_vector(crypto.SV_SDM_MAC, uid, ctr) == h(exp["sv2"])
    enc, mac = sdm_session_keys(h(inp["k_sdm_file_read"]), uid, ctr)
    assert enc == h(exp["k_ses_sdm_file_read_enc"])
    assert mac == h(exp["k_ses_sdm_file_read_mac"])


@pytest.mark.parametrize("vector", of_kind("padding_m2"))
def test_padding_m2(vector: dict[str, Any]) -> None:
    data, padded = h(vector["inputs"]["data"]), h(vector["expected"]["padded"])
    assert crypto.pad_m2(data) == padded
    assert crypto.unpad_m2(padded) == data


@pytest.mark.parametrize("vector", of_kind("crc32_nxp"))
def test_crc32nk(vector: dict[str, Any]) -> None:
    assert crypto.crc32nk(h(vector["inputs"]["data"])) == h(vector["expected"]["crc32"])


@pytest.mark.parametrize("vector", [*of_kind("ev2_auth_first"), *of_kind("ev2_auth_nonfirst")])
def test_auth_session_vectors_and_keys(vector: dict[str, Any]) -> None:
    inp, exp = vector["inputs"], vector["expected"]
    rnd_a, rnd_b, key = h(inp["rnd_a"]), h(exp["rnd_b"]), h(inp["key"])
    sv1 = crypto.auth_session_vector(crypto.SV_AUTH_ENC, rnd_a, rnd_b)
    sv2 = crypto.auth_session_vector(crypto.SV_AUTH_MAC, rnd_a, rnd_b)
    assert (sv1, sv2) == (h(exp["sv1"]), h(exp["sv2"]))
    assert crypto.cmac(key, sv1) == h(exp["k_ses_auth_enc"])
    assert crypto.cmac(key, sv2) == h(exp["k_ses_auth_mac"])
    assert crypto.rotate_left(rnd_b) == h(exp["rnd_b_rot"])


def test_mact_truncation_takes_odd_indices() -> None:
    """Published full and truncated MACs (AN12196 T5, T6, T8, T26) agree with mac[1::2]."""
    pairs = []
    for v in VECTORS:
        exp = v["expected"]
        for full, short in (("sdmmac_full", "sdmmac"), ("cmd_cmac", "cmd_mact")):
            if full in exp and short in exp:
                pairs.append((h(exp[full]), h(exp[short])))
    assert len(pairs) >= 4
    for full, short in pairs:
        assert crypto.truncate_mac(full) == short


@given(st.binary(max_size=80))
def test_padding_round_trip(data: bytes) -> None:
    padded = crypto.pad_m2(data)
    assert len(padded) % 16 == 0 and len(padded) > len(data)
    assert crypto.unpad_m2(padded) == data


@given(st.binary(min_size=16, max_size=16).filter(lambda b: b.rstrip(b"\0")[-1:] != b"\x80"))
def test_unpad_rejects_blocks_without_marker(block: bytes) -> None:
    with pytest.raises(ValueError):
        crypto.unpad_m2(block)


@given(st.binary(max_size=64))
def test_crc32nk_is_jamcrc(data: bytes) -> None:
    expected = (zlib.crc32(data) ^ 0xFFFFFFFF).to_bytes(4, "little")
    assert crypto.crc32nk(data) == expected


@given(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16))
def test_single_block_cmac_is_one_encryption(key: bytes, block: bytes) -> None:
    """CMAC of one complete block = E(K, M xor K1): the identity the fast verifier relies on."""
    _, k1, _ = cmac_subkeys(key)
    assert crypto.cmac(key, block) == crypto.aes_ecb_encrypt(key, crypto.xor(block, k1))


@given(
    st.binary(min_size=16, max_size=16),
    st.binary(min_size=16, max_size=64).filter(lambda b: len(b) % 16 == 0),
    st.binary(min_size=16, max_size=16),
)
def test_cbc_round_trip(key: bytes, data: bytes, iv: bytes) -> None:
    assert crypto.aes_cbc_decrypt(key, iv, crypto.aes_cbc_encrypt(key, iv, data)) == data
