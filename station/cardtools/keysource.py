"""Keys from wherever the operator keeps them: an issuer key (deterministic keys need the
card's UID, which only the card knows), a keys file, a ``new_bolt_card_response`` or a wipe
JSON, or just K1/K2."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from station.cardtools.errors import BadInput
from station.ntag424 import commands as cmd
from station.ntag424 import flows, keys, sun
from station.ntag424.apdu import Flow
from station.ntag424.errors import InvalidTap, UsageError


class UidKeys(Protocol):
    """Keys by card UID (``KeyStore`` fits): deterministic keys need the UID first."""

    def keys_for(self, uid: bytes) -> keys.KeySet | None: ...


@dataclass(frozen=True)
class KeySource:
    """The keys the operator holds for a card, in one of three shapes.

    ``store`` (issuer key and/or keys file) yields a card's keys once its UID is known;
    ``fixed`` is one card's five keys (``new_bolt_card_response`` or wipe JSON); ``k1k2`` is
    just the SUN keys, enough to verify a tap but not to authenticate key 0.
    """

    store: UidKeys | None = None
    fixed: keys.KeySet | None = None
    k1k2: tuple[bytes, bytes] | None = None

    @property
    def empty(self) -> bool:
        return self.store is None and self.fixed is None and self.k1k2 is None

    def __repr__(self) -> str:
        kinds = [n for n in ("store", "fixed", "k1k2") if getattr(self, n) is not None]
        return f"KeySource({', '.join(kinds) or 'none'})"


def parse_hex(value: str, option: str, size: int) -> bytes:
    """``value`` as exactly ``size`` bytes of hex; the message never echoes the value."""
    try:
        data = bytes.fromhex(value.strip())
    except ValueError:
        raise BadInput(f"{option} must be {2 * size} hex digits") from None
    if len(data) != size:
        raise BadInput(f"{option} must be {2 * size} hex digits")
    return data


def check_key_version(version: int) -> int:
    """The card stores one byte per key version, and 0 marks a factory key."""
    if not 1 <= version <= 0xFF:
        raise BadInput("--version must be 1..255 (the card keeps one byte; 0 marks factory keys)")
    return version


def read_json(path: Path, option: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{option} {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{option} {path}: cannot read it ({type(exc).__name__})") from None
    except ValueError:
        raise BadInput(f"{option} {path}: not valid JSON") from None


def load_program(path: Path) -> keys.CardProgram:
    """A ``new_bolt_card_response`` file (``--keys-json``)."""
    try:
        return keys.parse_new_bolt_card_response(read_json(path, "--keys-json"))
    except UsageError as exc:
        raise BadInput(f"--keys-json {path}: {exc}") from None


def load_wipe_keys(path: Path) -> keys.KeySet:
    """A wipe JSON file (``--wipe-json``); a ``new_bolt_card_response`` is accepted too."""
    data = read_json(path, "--wipe-json")
    try:
        if isinstance(data, dict) and "action" in data:
            return keys.parse_wipe_json(data)
        return keys.parse_new_bolt_card_response(data).keys
    except UsageError as exc:
        raise BadInput(f"--wipe-json {path}: {exc}") from None


def issuer_store(issuer_key: bytes, version: int, keys_file: Path | None = None) -> keys.KeyStore:
    """Deterministic keys (and/or a keys file) as a store keyed by UID."""
    try:
        return keys.KeyStore.from_sources(
            keys_file=keys_file, issuer_key=issuer_key, version=version
        )
    except UsageError as exc:
        raise BadInput(str(exc)) from None


def file_store(keys_file: Path, issuer_key: bytes | None, version: int | None) -> keys.KeyStore:
    """A station keys file (``--keys``), optionally with an issuer key as fallback."""
    try:
        return keys.KeyStore.from_file(keys_file, issuer_key=issuer_key, issuer_version=version)
    except UsageError as exc:
        raise BadInput(str(exc)) from None


def identify_keys(store: UidKeys) -> Flow[tuple[bytes | None, keys.KeySet | None]]:
    """(UID, keys) of the card in the field, without changing anything but the read counter.

    GetVersion shows the UID unless random ID is on; then the SUN URL is decrypted with each
    K1 the store holds (a :class:`~station.ntag424.keys.KeyStore` can, other stores cannot).
    """
    yield from cmd.iso_select_application()
    version = yield from cmd.get_version()
    if not version.random_uid:
        return version.uid, store.keys_for(version.uid)
    if not isinstance(store, keys.KeyStore):
        return None, None
    url = yield from flows.read_sun_url()
    try:
        match = store.verify(sun.parse_sun_url(url))
    except (InvalidTap, UsageError):
        return None, None
    return match.uid, match.keys
