"""Bolt Card application keys: deterministic derivation, the programmer-app JSON, a key store.

Key roles on a Bolt Card (boltcard docs/DETERMINISTIC.md): K0 is the application master key
(only it may change keys), K1 the SDM meta read key that encrypts ``p``, K2 the SDM file read
key that the ``c`` MAC derives from; K3 and K4 are unused but set.

Deterministic keys (DETERMINISTIC.md, "Key generation"; PRF = AES-CMAC)::

    CardKey = PRF(IssuerKey, 2d003f75 || UID || uint32LE(version))
    K0 = PRF(CardKey, 2d003f76)       K1 = PRF(IssuerKey, 2d003f77)   (issuer-wide)
    K2 = PRF(CardKey, 2d003f78)       K3 = PRF(CardKey, 2d003f79)     K4 = PRF(CardKey, 2d003f7a)
    ID = PRF(IssuerKey, 2d003f7b || UID)

K1 is shared by every card of an issuer so that a verifier can decrypt ``p`` before it knows
which card tapped; the UID inside then selects K2. A per-card key file has no such shortcut:
:class:`KeyStore` tries each distinct K1 it holds, then looks the UID up.

Keys never appear in ``repr``/``str`` or in error messages.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from station.ntag424 import crypto
from station.ntag424.errors import InvalidTap, MalformedInput, UsageError
from station.ntag424.sun import (
    BOLT_CARD_TAG,
    FileReadKey,
    SunParams,
    SunResult,
    decode_bolt_hex,
    meta_read_decryptor,
)

__all__ = [
    "DEFAULT_VERSION",
    "CardEntry",
    "CardProgram",
    "KeySet",
    "KeyStore",
    "StoreMatch",
    "UnknownCard",
    "card_id",
    "derive_card_key",
    "derive_keys",
    "issuer_k1",
    "new_bolt_card_response",
    "parse_new_bolt_card_response",
    "parse_wipe_json",
    "wipe_json",
]

DEFAULT_VERSION: Final = 1
"""Key version used when none is given (the one of DETERMINISTIC.md's test vector)."""

_TAG_CARD_KEY: Final = bytes.fromhex("2d003f75")
_TAG_K0: Final = bytes.fromhex("2d003f76")
_TAG_K1: Final = bytes.fromhex("2d003f77")
_TAG_K2: Final = bytes.fromhex("2d003f78")
_TAG_K3: Final = bytes.fromhex("2d003f79")
_TAG_K4: Final = bytes.fromhex("2d003f7a")
_TAG_ID: Final = bytes.fromhex("2d003f7b")
_UID_LEN: Final = 7
_KEY_NAMES: Final = ("k0", "k1", "k2", "k3", "k4")
_CACHE_SIZE: Final = 4096


@dataclass(frozen=True, slots=True, repr=False)
class KeySet:
    """The five application keys of one card and their key version. ``repr`` hides the keys."""

    k0: bytes
    k1: bytes
    k2: bytes
    k3: bytes
    k4: bytes
    version: int = DEFAULT_VERSION

    def __post_init__(self) -> None:
        for name in _KEY_NAMES:
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != 16:
                raise UsageError(f"{name.upper()} must be 16 bytes")
        if not 0 <= self.version <= 0xFFFFFFFF:
            raise UsageError("the key version is a uint32")

    def __repr__(self) -> str:
        return f"KeySet(version={self.version}, keys=<redacted>)"

    __str__ = __repr__

    def as_hex(self) -> dict[str, str]:
        """``{"k0": hex, …, "k4": hex}`` (lowercase, as the Bolt Card apps print them)."""
        return {name: getattr(self, name).hex() for name in _KEY_NAMES}


def _check_issuer_key(issuer_key: bytes) -> None:
    if not isinstance(issuer_key, bytes) or len(issuer_key) != 16:
        raise UsageError("the issuer key must be 16 bytes")


def _check_uid(uid: bytes) -> None:
    if not isinstance(uid, bytes) or len(uid) != _UID_LEN:
        raise UsageError("the UID must be 7 bytes")


def issuer_k1(issuer_key: bytes) -> bytes:
    """K1 = PRF(IssuerKey, 2d003f77): the issuer-wide SDM meta read key."""
    _check_issuer_key(issuer_key)
    return crypto.cmac(issuer_key, _TAG_K1)


def derive_card_key(issuer_key: bytes, uid: bytes, version: int = DEFAULT_VERSION) -> bytes:
    """CardKey = PRF(IssuerKey, 2d003f75 || UID || uint32LE(version))."""
    _check_issuer_key(issuer_key)
    _check_uid(uid)
    if not 0 <= version <= 0xFFFFFFFF:
        raise UsageError("the key version is a uint32")
    return crypto.cmac(issuer_key, _TAG_CARD_KEY + uid + version.to_bytes(4, "little"))


def card_id(issuer_key: bytes, uid: bytes) -> bytes:
    """ID = PRF(IssuerKey, 2d003f7b || UID): a stable card identifier that reveals no key."""
    _check_issuer_key(issuer_key)
    _check_uid(uid)
    return crypto.cmac(issuer_key, _TAG_ID + uid)


def derive_keys(issuer_key: bytes, uid: bytes, version: int = DEFAULT_VERSION) -> KeySet:
    """All five keys of card ``uid`` at ``version`` under ``issuer_key``."""
    card_key = derive_card_key(issuer_key, uid, version)
    return KeySet(
        k0=crypto.cmac(card_key, _TAG_K0),
        k1=issuer_k1(issuer_key),
        k2=crypto.cmac(card_key, _TAG_K2),
        k3=crypto.cmac(card_key, _TAG_K3),
        k4=crypto.cmac(card_key, _TAG_K4),
        version=version,
    )


# ---------------------------------------------------------------------------------------------
# Programmer-app JSON


@dataclass(frozen=True, slots=True)
class CardProgram:
    """A ``new_bolt_card_response``: what a programmer app writes to a blank card."""

    keys: KeySet
    lnurlw: str
    card_name: str = ""


def new_bolt_card_response(keys: KeySet, lnurlw: str, card_name: str = "") -> dict[str, Any]:
    """The JSON object a Bolt Card programmer app scans to program a card.

    Field names as BTCPay Server's Boltcard API answers (``LNURLW``, ``K0``…``K4``) plus the
    ``protocol_name``/``protocol_version``/``card_name`` envelope of the boltcard apps.
    """
    out: dict[str, Any] = {
        "protocol_name": "new_bolt_card_response",
        "protocol_version": 1,
        "card_name": card_name,
        "LNURLW": lnurlw,
    }
    for name, value in keys.as_hex().items():
        out[name.upper()] = value
    return out


def _field(obj: Mapping[str, Any], *names: str) -> Any:
    """First present field among ``names``, matched case-insensitively."""
    lowered = {str(k).lower(): v for k, v in obj.items()}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


def _key_from(obj: Mapping[str, Any], name: str, where: str) -> bytes:
    value = _field(obj, name)
    if not isinstance(value, str):
        raise MalformedInput(f"{where}: {name.upper()} is missing")
    try:
        key = bytes.fromhex(value)
    except ValueError:
        raise MalformedInput(f"{where}: {name.upper()} is not hexadecimal") from None
    if len(key) != 16 or len(value) != 32:
        raise MalformedInput(f"{where}: {name.upper()} must be 32 hex digits")
    return key


def _version_from(obj: Mapping[str, Any], where: str, *names: str) -> int:
    value = _field(obj, *names)
    if value is None:
        return DEFAULT_VERSION
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFFFFFF:
        raise MalformedInput(f"{where}: the key version must be an integer 0..2^32-1")
    return value


def _load_object(data: str | bytes | Mapping[str, Any], where: str) -> Mapping[str, Any]:
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise MalformedInput(f"{where}: not valid JSON") from None
    if not isinstance(data, Mapping):
        raise MalformedInput(f"{where}: expected a JSON object")
    return data


def _keyset_from(obj: Mapping[str, Any], where: str, version: int) -> KeySet:
    k0, k1, k2, k3, k4 = (_key_from(obj, name, where) for name in _KEY_NAMES)
    return KeySet(k0=k0, k1=k1, k2=k2, k3=k3, k4=k4, version=version)


def parse_new_bolt_card_response(data: str | bytes | Mapping[str, Any]) -> CardProgram:
    """Read a ``new_bolt_card_response`` in either casing the apps use.

    Accepts ``LNURLW`` or ``lnurlw_base``, ``K0`` or ``k0``; ``protocol_name`` must be
    ``new_bolt_card_response`` when present.
    """
    where = "new_bolt_card_response"
    obj = _load_object(data, where)
    protocol = _field(obj, "protocol_name")
    if protocol is not None and str(protocol).lower() != "new_bolt_card_response":
        raise MalformedInput(f"{where}: protocol_name is not new_bolt_card_response")
    lnurlw = _field(obj, "LNURLW", "lnurlw_base")
    if not isinstance(lnurlw, str) or not lnurlw:
        raise MalformedInput(f"{where}: LNURLW is missing")
    name = _field(obj, "card_name")
    keys = _keyset_from(obj, where, _version_from(obj, where, "version"))
    return CardProgram(keys=keys, lnurlw=lnurlw, card_name=str(name) if name else "")


def wipe_json(keys: KeySet) -> dict[str, Any]:
    """The JSON a programmer app's "key reset" screen takes to wipe a card.

    ``version`` is the version of this JSON format (1), not the key version.
    """
    return {"version": 1, "action": "wipe", **keys.as_hex()}


def parse_wipe_json(data: str | bytes | Mapping[str, Any]) -> KeySet:
    """Read a wipe JSON (``{"version": 1, "action": "wipe", "k0": …, …, "k4": …}``)."""
    where = "wipe JSON"
    obj = _load_object(data, where)
    if _field(obj, "action") != "wipe":
        raise MalformedInput(f'{where}: "action" must be "wipe"')
    return _keyset_from(obj, where, DEFAULT_VERSION)


# ---------------------------------------------------------------------------------------------
# Key store


class UnknownCard(InvalidTap, LookupError):
    """No key in the store decrypts ``p`` to a known card (reason ``"unknown card"``).

    Still an :class:`InvalidTap` (opaque to the outside); a ``LookupError`` too, so callers
    can tell "not ours" from "forged" without comparing reason strings.
    """

    def __init__(self) -> None:
        super().__init__("unknown card")


@dataclass(frozen=True, slots=True)
class CardEntry:
    """One card of a per-card keys file."""

    uid: bytes
    keys: KeySet
    card_name: str = ""
    card_id: bytes | None = None
    """An identifier from the keys file (``id``/``card_id``, hex), if any."""


@dataclass(frozen=True, slots=True)
class StoreMatch:
    """A verified tap and the keys that verified it."""

    result: SunResult
    uid: bytes
    counter: int
    keys: KeySet
    card_name: str
    source: str
    """``"file"`` (per-card keys) or ``"issuer"`` (deterministic keys)."""
    card_id: bytes | None = None
    """Deterministic ID = PRF(IssuerKey, 2d003f7b || UID), or the keys file's ``id``."""


class _Group:
    """Cards sharing one K1: the decryptor and UID → (entry, lazily built K2 context)."""

    __slots__ = ("decrypt", "entries", "files")

    def __init__(self, k1: bytes) -> None:
        self.decrypt = meta_read_decryptor(k1)
        self.entries: dict[bytes, CardEntry] = {}
        self.files: dict[bytes, FileReadKey] = {}


class KeyStore:
    """Maps a tap to its card's keys: per-card keys and/or one deterministic issuer key.

    Verification decrypts ``p`` with each distinct K1 (the issuer's first, then each group of
    the per-card file), keeps the first plaintext whose tag is a Bolt Card's and whose UID is
    known for that K1, and checks the MAC with that card's K2. K2 contexts are built on first
    use and kept in a bounded cache, so memory stays flat however many taps go through.
    """

    def __init__(
        self,
        cards: Iterable[CardEntry] = (),
        *,
        issuer_key: bytes | None = None,
        issuer_version: int = DEFAULT_VERSION,
    ) -> None:
        self._groups: dict[bytes, _Group] = {}
        self._by_uid: dict[bytes, CardEntry] = {}
        for entry in cards:
            _check_uid(entry.uid)
            if entry.uid in self._by_uid:
                raise MalformedInput(f"UID {entry.uid.hex()} appears twice in the key file")
            self._by_uid[entry.uid] = entry
            group = self._groups.get(entry.keys.k1)
            if group is None:
                group = self._groups[entry.keys.k1] = _Group(entry.keys.k1)
            group.entries[entry.uid] = entry
        self._issuer_key: bytes | None = None
        self._issuer_decrypt: Callable[[bytes], bytes] | None = None
        self._issuer_k1 = b""
        self._issuer_version = issuer_version
        self._issuer_files: dict[bytes, tuple[KeySet, FileReadKey]] = {}
        if issuer_key is not None:
            _check_issuer_key(issuer_key)
            if not 0 <= issuer_version <= 0xFFFFFFFF:
                raise UsageError("the key version is a uint32")
            self._issuer_key = issuer_key
            self._issuer_k1 = issuer_k1(issuer_key)
            self._issuer_decrypt = meta_read_decryptor(self._issuer_k1)
        if not self._groups and self._issuer_decrypt is None:
            raise UsageError("a key store needs per-card keys or an issuer key")

    # -- loading ------------------------------------------------------------------------------

    @classmethod
    def from_json(
        cls,
        data: str | bytes | Mapping[str, Any] | list[Any],
        *,
        issuer_key: bytes | None = None,
        issuer_version: int | None = None,
        where: str = "keys file",
    ) -> KeyStore:
        """Build a store from a keys file's content.

        Shape: ``{"issuer_key": hex?, "issuer_version": n?, "cards": [{"uid": hex,
        "k0".."k4": hex, "version": n?, "card_name": str?}, …]}``, or just the list of cards.
        Arguments override the file's issuer key and version.
        """
        if isinstance(data, str | bytes):
            try:
                data = json.loads(data)
            except (ValueError, UnicodeDecodeError):
                raise MalformedInput(f"{where}: not valid JSON") from None
        if isinstance(data, list):
            data = {"cards": data}
        if not isinstance(data, Mapping):
            raise MalformedInput(f"{where}: expected a JSON object or a list of cards")
        raw_cards = data.get("cards", [])
        if not isinstance(raw_cards, list):
            raise MalformedInput(f'{where}: "cards" must be a list')
        entries = [_entry_from(obj, f"{where}: card #{i + 1}") for i, obj in enumerate(raw_cards)]
        if issuer_key is None and data.get("issuer_key") is not None:
            issuer_key = _key_from(data, "issuer_key", where)
        version = issuer_version
        if version is None:
            version = _version_from(data, where, "issuer_version")
        try:
            return cls(entries, issuer_key=issuer_key, issuer_version=version)
        except UsageError as exc:
            if isinstance(exc, MalformedInput):
                raise
            raise MalformedInput(f"{where}: {exc}") from None

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        issuer_key: bytes | None = None,
        issuer_version: int | None = None,
    ) -> KeyStore:
        """Read a keys file (see :meth:`from_json`); unreadable files raise MalformedInput."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
            raise MalformedInput(f"cannot read keys file {str(path)!r}: {reason}") from None
        return cls.from_json(
            text, issuer_key=issuer_key, issuer_version=issuer_version, where=f"{path}"
        )

    @classmethod
    def from_sources(
        cls,
        *,
        keys_file: str | Path | None = None,
        issuer_key: bytes | None = None,
        version: int | None = None,
    ) -> KeyStore:
        """A store from a keys file and/or an issuer key (the station's settings)."""
        if keys_file is not None:
            return cls.from_file(keys_file, issuer_key=issuer_key, issuer_version=version)
        if issuer_key is None:
            raise UsageError("a key store needs per-card keys or an issuer key")
        return cls(
            issuer_key=issuer_key, issuer_version=DEFAULT_VERSION if version is None else version
        )

    # -- lookup -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._by_uid)

    def __repr__(self) -> str:
        issuer = "yes" if self._issuer_key is not None else "no"
        return (
            f"KeyStore(cards={len(self._by_uid)}, k1_groups={len(self._groups)}, issuer={issuer})"
        )

    def keys_for(self, uid: bytes) -> KeySet | None:
        """The keys of ``uid``: from the per-card file, else derived from the issuer key."""
        entry = self._by_uid.get(uid)
        if entry is not None:
            return entry.keys
        if self._issuer_key is not None and len(uid) == _UID_LEN:
            return self._issuer_file(uid)[0]
        return None

    def _issuer_file(self, uid: bytes) -> tuple[KeySet, FileReadKey]:
        cached = self._issuer_files.get(uid)
        if cached is None:
            assert self._issuer_key is not None
            keys = derive_keys(self._issuer_key, uid, self._issuer_version)
            cached = (keys, FileReadKey(keys.k2))
            if len(self._issuer_files) >= _CACHE_SIZE:
                del self._issuer_files[next(iter(self._issuer_files))]
            self._issuer_files[uid] = cached
        return cached

    @staticmethod
    def _group_file(group: _Group, entry: CardEntry) -> FileReadKey:
        file = group.files.get(entry.uid)
        if file is None:
            file = FileReadKey(entry.keys.k2)
            if len(group.files) >= _CACHE_SIZE:
                del group.files[next(iter(group.files))]
            group.files[entry.uid] = file
        return file

    def _candidates(
        self, picc: bytes
    ) -> Iterable[tuple[bytes, FileReadKey, KeySet, CardEntry | None]]:
        """(PICCData, K2 context, keys, file entry or None for issuer keys) for each K1 that
        decrypts to a Bolt Card tag and a UID known under that K1."""
        if self._issuer_decrypt is not None:
            plain = self._issuer_decrypt(picc)
            if plain[0] == BOLT_CARD_TAG:
                uid = plain[1:8]
                entry = self._by_uid.get(uid)
                if entry is None or entry.keys.k1 != self._issuer_k1:
                    keys, file = self._issuer_file(uid)
                    yield plain, file, keys, None
        for group in self._groups.values():
            plain = group.decrypt(picc)
            if plain[0] != BOLT_CARD_TAG:
                continue
            entry = group.entries.get(plain[1:8])
            if entry is not None:
                yield plain, self._group_file(group, entry), entry.keys, entry

    def verify(self, params: SunParams) -> StoreMatch:
        """Verify a Bolt Card SUN message (tag C7, any MAC input); raise :class:`InvalidTap`.

        Reasons: ``"unknown card"`` (:class:`UnknownCard`: no K1 yields a known UID),
        ``"cmac mismatch"``, or those of :meth:`~station.ntag424.sun.FileReadKey.check`.
        """
        failure: InvalidTap | None = None
        for plain, file, keys, entry in self._candidates(params.picc_enc_data):
            try:
                result = file.check(plain, params)
            except InvalidTap as exc:
                failure = failure or exc
                continue
            uid, counter = result.identity()
            if entry is None:
                assert self._issuer_key is not None
                ident = card_id(self._issuer_key, uid)
                return StoreMatch(result, uid, counter, keys, "", "issuer", ident)
            return StoreMatch(result, uid, counter, keys, entry.card_name, "file", entry.card_id)
        raise failure or UnknownCard()

    def verify_bolt_hex(self, p_hex: str, c_hex: str) -> tuple[bytes, int]:
        """:meth:`verify`'s shortcut for the Bolt Card shape: hex ``p``/``c`` in, (UID,
        counter) out, through the same lookup and the same K2 check as
        :attr:`SunVerifier.verify_bolt_hex <station.ntag424.sun.SunVerifier.verify_bolt_hex>`.
        """
        p, c = decode_bolt_hex(p_hex, c_hex)
        failure: InvalidTap | None = None
        for plain, file, _keys, _entry in self._candidates(p):
            try:
                return file.check_bolt(plain, c)
            except InvalidTap as exc:
                failure = failure or exc
        raise failure or UnknownCard()


def _entry_from(obj: Any, where: str) -> CardEntry:
    if not isinstance(obj, Mapping):
        raise MalformedInput(f"{where}: expected a JSON object")
    uid_text = _field(obj, "uid")
    if not isinstance(uid_text, str):
        raise MalformedInput(f"{where}: uid is missing")
    try:
        uid = bytes.fromhex(uid_text)
    except ValueError:
        raise MalformedInput(f"{where}: uid is not hexadecimal") from None
    if len(uid) != _UID_LEN or len(uid_text) != 2 * _UID_LEN:
        raise MalformedInput(f"{where}: uid must be 14 hex digits")
    keys = _keyset_from(obj, where, _version_from(obj, where, "version"))
    name = _field(obj, "card_name")
    ident: bytes | None = None
    ident_text = _field(obj, "card_id", "id")
    if isinstance(ident_text, str) and ident_text:
        try:
            ident = bytes.fromhex(ident_text)
        except ValueError:
            raise MalformedInput(f"{where}: card_id is not hexadecimal") from None
    return CardEntry(uid=uid, keys=keys, card_name=str(name) if name else "", card_id=ident)
