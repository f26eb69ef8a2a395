"""Bolt Card keys: DETERMINISTIC.md derivation, programmer-app JSON, the key store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from published import VECTORS

from station.ntag424 import crypto
from station.ntag424.errors import InvalidTap, MalformedInput, UsageError
from station.ntag424.keys import (
    CardEntry,
    KeySet,
    KeyStore,
    UnknownCard,
    card_id,
    derive_card_key,
    derive_keys,
    issuer_k1,
    new_bolt_card_response,
    parse_new_bolt_card_response,
    parse_wipe_json,
    wipe_json,
)
from station.ntag424.sun import build_sun_url, compute_sun, parse_sun_url

DETERMINISTIC = [pytest.param(v, id=v["id"]) for v in VECTORS if v["kind"] == "deterministic_keys"]

ISSUER = bytes.fromhex("00000000000000000000000000000001")


def h(text: str) -> bytes:
    return bytes.fromhex(text)


@pytest.mark.parametrize("vector", DETERMINISTIC)
def test_deterministic_vector(vector: dict[str, Any]) -> None:
    inp, exp = vector["inputs"], vector["expected"]
    issuer, uid, version = h(inp["issuer_key"]), h(inp["uid"]), inp["version"]
    assert derive_card_key(issuer, uid, version) == h(exp["card_key"])
    keys = derive_keys(issuer, uid, version)
    assert keys.as_hex() == {name: exp[name] for name in ("k0", "k1", "k2", "k3", "k4")}
    assert keys.version == version
    assert card_id(issuer, uid) == h(exp["id"])


def test_derivation_formula_spelled_out() -> None:
    """The DETERMINISTIC.md formulas with raw CMAC calls (version is uint32 little-endian)."""
    uid = h("04a39493cc8680")
    card_key = crypto.cmac(ISSUER, h("2d003f75") + uid + h("02000000"))
    keys = derive_keys(ISSUER, uid, 2)
    assert keys.k0 == crypto.cmac(card_key, h("2d003f76"))
    assert keys.k1 == crypto.cmac(ISSUER, h("2d003f77")) == issuer_k1(ISSUER)
    assert keys.k2 == crypto.cmac(card_key, h("2d003f78"))
    assert keys.k3 == crypto.cmac(card_key, h("2d003f79"))
    assert keys.k4 == crypto.cmac(card_key, h("2d003f7a"))


@settings(max_examples=30)
@given(st.binary(min_size=7, max_size=7), st.integers(0, 2**32 - 2))
def test_k1_is_issuer_wide_and_version_changes_the_rest(uid: bytes, version: int) -> None:
    a = derive_keys(ISSUER, uid, version)
    b = derive_keys(ISSUER, uid, version + 1)
    assert a.k1 == b.k1 == issuer_k1(ISSUER)
    assert len({a.k0, a.k2, a.k3, a.k4, b.k0, b.k2, b.k3, b.k4}) == 8


def test_keyset_hides_keys() -> None:
    keys = derive_keys(ISSUER, h("04a39493cc8680"))
    for text in (repr(keys), str(keys), repr(KeyStore([CardEntry(h("04a39493cc8680"), keys)]))):
        for value in keys.as_hex().values():
            assert value not in text.lower()


@pytest.mark.parametrize(
    "call",
    [
        lambda: KeySet(bytes(16), bytes(16), bytes(15), bytes(16), bytes(16)),
        lambda: derive_keys(bytes(15), bytes(7)),
        lambda: derive_keys(ISSUER, bytes(8)),
        lambda: derive_keys(ISSUER, bytes(7), -1),
        lambda: KeyStore([]),
    ],
)
def test_bad_arguments_are_usage_errors(call: Any) -> None:
    with pytest.raises(UsageError):
        call()


# ---------------------------------------------------------------------------------------------
# Programmer-app JSON


def test_new_bolt_card_response_round_trip() -> None:
    keys = derive_keys(ISSUER, h("04a39493cc8680"))
    obj = new_bolt_card_response(keys, "lnurlw://pay.example/ln", "Shop card")
    assert obj["protocol_name"] == "new_bolt_card_response"
    assert obj["protocol_version"] == 1
    assert obj["LNURLW"] == "lnurlw://pay.example/ln"
    assert obj["K2"] == keys.k2.hex()
    parsed = parse_new_bolt_card_response(json.dumps(obj))
    assert parsed.keys == keys
    assert (parsed.lnurlw, parsed.card_name) == ("lnurlw://pay.example/ln", "Shop card")


def test_reads_the_android_app_shape() -> None:
    """Lowercase k0..k4 and lnurlw_base, as the boltcard NFC programming app's README shows."""
    text = json.dumps(
        {
            "protocol_name": "new_bolt_card_response",
            "protocol_version": 1,
            "card_name": "Spending_Card",
            "lnurlw_base": "lnurlw://your.domain.com/ln",
            "k0": "11" * 16,
            "k1": "22" * 16,
            "k2": "33" * 16,
            "k3": "44" * 16,
            "k4": "55" * 16,
        }
    )
    parsed = parse_new_bolt_card_response(text)
    assert parsed.keys.k3 == h("44" * 16)
    assert parsed.lnurlw == "lnurlw://your.domain.com/ln"


@pytest.mark.parametrize(
    "obj",
    [
        "not json",
        "[]",
        {
            "protocol_name": "something_else",
            "LNURLW": "x",
            **{f"K{i}": "00" * 16 for i in range(5)},
        },
        {"LNURLW": "x", **{f"K{i}": "00" * 16 for i in range(4)}},
        {"LNURLW": "x", **{f"K{i}": "0g" * 16 for i in range(5)}},
        {**{f"K{i}": "00" * 16 for i in range(5)}},
    ],
)
def test_bad_new_bolt_card_response(obj: Any) -> None:
    with pytest.raises(MalformedInput):
        parse_new_bolt_card_response(obj)


def test_wipe_json_round_trip() -> None:
    keys = derive_keys(ISSUER, h("04a39493cc8680"), 3)
    obj = wipe_json(keys)
    assert obj["action"] == "wipe" and obj["version"] == 1
    back = parse_wipe_json(json.dumps(obj))
    assert back.as_hex() == keys.as_hex()
    with pytest.raises(MalformedInput):
        parse_wipe_json({**obj, "action": "program"})


# ---------------------------------------------------------------------------------------------
# Key store


def tap_url(keys: KeySet, uid: bytes, counter: int) -> str:
    return build_sun_url("lnurlw://pay.example/ln", compute_sun(keys.k1, keys.k2, uid, counter))


def random_card(seed: int) -> CardEntry:
    uid = bytes([4, seed, 2, 3, 4, 5, 6])
    k = [crypto.cmac(bytes([seed]) * 16, bytes([i])) for i in range(5)]
    return CardEntry(uid, KeySet(*k), card_name=f"card {seed}")


def split(url: str) -> tuple[str, str]:
    p, c = url.split("?p=")[1].split("&c=")
    return p, c


def test_store_tries_each_k1_then_finds_the_uid() -> None:
    cards = [random_card(i) for i in range(1, 6)]  # five different K1s
    store = KeyStore(cards)
    for n, card in enumerate(cards):
        url = tap_url(card.keys, card.uid, 100 + n)
        match = store.verify(parse_sun_url(url))
        assert (match.uid, match.counter, match.card_name) == (card.uid, 100 + n, card.card_name)
        assert match.source == "file" and match.keys == card.keys
        assert store.verify_bolt_hex(*split(url)) == (card.uid, 100 + n)


def test_store_with_shared_k1_selects_k2_by_uid() -> None:
    uids = [bytes([4, 9, 9, 9, 9, 9, i]) for i in range(4)]
    sets = [derive_keys(ISSUER, uid) for uid in uids]
    store = KeyStore([CardEntry(u, k) for u, k in zip(uids, sets, strict=True)])
    for uid, keys in zip(uids, sets, strict=True):
        assert store.verify(parse_sun_url(tap_url(keys, uid, 7))).uid == uid


def test_store_unknown_card_and_forgery() -> None:
    card, stranger = random_card(1), random_card(2)
    store = KeyStore([card])
    with pytest.raises(UnknownCard) as unknown:
        store.verify(parse_sun_url(tap_url(stranger.keys, stranger.uid, 1)))
    assert unknown.value.reason == "unknown card" and isinstance(unknown.value, LookupError)
    # Right K1 and UID, wrong K2: decrypts, but the MAC fails.
    forged = KeySet(card.keys.k0, card.keys.k1, stranger.keys.k2, card.keys.k3, card.keys.k4)
    url = tap_url(forged, card.uid, 5)
    with pytest.raises(InvalidTap) as bad:
        store.verify(parse_sun_url(url))
    assert bad.value.reason == "cmac mismatch"
    with pytest.raises(InvalidTap) as bad_fast:
        store.verify_bolt_hex(*split(url))
    assert bad_fast.value.reason == "cmac mismatch"


def test_issuer_store_derives_k2_per_card() -> None:
    store = KeyStore(issuer_key=ISSUER, issuer_version=2)
    uid = h("04a39493cc8680")
    keys = derive_keys(ISSUER, uid, 2)
    url = tap_url(keys, uid, 9)
    match = store.verify(parse_sun_url(url))
    assert (match.uid, match.counter, match.source) == (uid, 9, "issuer")
    assert match.card_id == card_id(ISSUER, uid)
    assert store.keys_for(uid) == keys
    assert store.verify_bolt_hex(*split(url)) == (uid, 9)
    old = derive_keys(ISSUER, uid, 1)
    with pytest.raises(InvalidTap):
        store.verify(parse_sun_url(tap_url(old, uid, 10)))


def test_store_file_and_issuer_together(tmp_path: Path) -> None:
    card = random_card(7)
    path = tmp_path / "keys.json"
    path.write_text(
        json.dumps(
            {
                "issuer_key": ISSUER.hex(),
                "cards": [{"uid": card.uid.hex(), "card_name": "seven", **card.keys.as_hex()}],
            }
        )
    )
    store = KeyStore.from_file(path)
    assert store.verify(parse_sun_url(tap_url(card.keys, card.uid, 1))).card_name == "seven"
    uid = h("04aabbccddeeff")
    assert store.verify(parse_sun_url(tap_url(derive_keys(ISSUER, uid), uid, 2))).uid == uid
    same = KeyStore.from_sources(keys_file=path)
    assert same.keys_for(card.uid) == card.keys


@pytest.mark.parametrize(
    "content",
    [
        "{",
        '"cards"',
        '{"cards": {}}',
        '{"cards": [{"uid": "04"}]}',
        '{"cards": [{"uid": "zz0102030405zz", "k0": "00"}]}',
        '{"cards": []}',
        '{"issuer_key": "0011"}',
    ],
)
def test_bad_key_files(tmp_path: Path, content: str) -> None:
    path = tmp_path / "keys.json"
    path.write_text(content)
    with pytest.raises(MalformedInput):
        KeyStore.from_file(path)


def test_duplicate_uid_and_missing_file(tmp_path: Path) -> None:
    card = random_card(3)
    entry = {"uid": card.uid.hex(), **card.keys.as_hex()}
    with pytest.raises(MalformedInput, match="twice"):
        KeyStore.from_json({"cards": [entry, entry]})
    with pytest.raises(MalformedInput, match="cannot read"):
        KeyStore.from_file(tmp_path / "nope.json")


def test_key_file_errors_never_echo_keys(tmp_path: Path) -> None:
    secret = "ab" * 15 + "zz"
    path = tmp_path / "keys.json"
    path.write_text(
        json.dumps({"cards": [{"uid": "04" * 7, **{f"k{i}": secret for i in range(5)}}]})
    )
    with pytest.raises(MalformedInput) as err:
        KeyStore.from_file(path)
    assert secret not in str(err.value)
