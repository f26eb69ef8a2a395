"""Verifiers: from a SUN URL to a verified (uid, counter), on the core's SUN and key store.

Both raise the core's errors unchanged: ``InvalidTap`` (bad MAC...), its subclass
:class:`~station.ntag424.keys.UnknownCard` (no key of ours fits), ``MalformedInput`` (not a
SUN URL at all). Thread-safe: a lock guards the cached cipher contexts of the fast verifier,
which costs microseconds per tap.
"""

from __future__ import annotations

from dataclasses import dataclass
from threading import Lock
from typing import Protocol

from station.ntag424.keys import KeyStore, UnknownCard
from station.ntag424.sun import SunVerifier, parse_sun_url
from station.settings import KeySettings


@dataclass(frozen=True)
class VerifiedTap:
    uid: bytes
    counter: int
    card_id: str | None = None


class TapVerifier(Protocol):
    """Turns a SUN URL into a verified (uid, counter)."""

    def verify(self, url: str) -> VerifiedTap: ...


class StaticKeysVerifier:
    """One card's K1/K2 (``station read --k1/--k2``)."""

    def __init__(self, k1: bytes, k2: bytes, card_id: str | None = None) -> None:
        self._verifier = SunVerifier(k1, k2)
        self._card_id = card_id
        self._lock = Lock()

    def verify(self, url: str) -> VerifiedTap:
        params = parse_sun_url(url)
        with self._lock:
            result = self._verifier.verify(params)
        uid, counter = result.identity()
        return VerifiedTap(uid, counter, self._card_id)


class KeyStoreVerifier:
    """Finds the card's keys in the key store (per-card file and/or issuer key) from p/c."""

    def __init__(self, store: KeyStore) -> None:
        self._store = store
        self._lock = Lock()

    def verify(self, url: str) -> VerifiedTap:
        params = parse_sun_url(url)
        with self._lock:
            match = self._store.verify(params)
        card_id = None if match.card_id is None else match.card_id.hex()
        return VerifiedTap(match.uid, match.counter, card_id)


class NoKeysVerifier:
    """A station that holds no card keys (``accept_foreign_cards`` with no [keys]): every
    Bolt Card is foreign to it, and only its issuer can verify a tap."""

    def verify(self, url: str) -> VerifiedTap:
        parse_sun_url(url)  # still refuse what is not a SUN URL at all
        raise UnknownCard()


def build_verifier(keys: KeySettings, *, foreign_ok: bool = False) -> TapVerifier:
    """A verifier from the station's key settings (keys file and/or issuer key).

    With no keys and ``foreign_ok`` (``accept_foreign_cards``), a verifier that knows no card.
    """
    if not keys.configured and foreign_ok:
        return NoKeysVerifier()
    if not keys.configured:
        raise ValueError(
            "no card keys configured: set [keys] file and/or issuer_key "
            "(STATION_KEYS_FILE / STATION_ISSUER_KEY)"
        )
    issuer = bytes.fromhex(keys.issuer_key.reveal()) if keys.issuer_key is not None else None
    store = KeyStore.from_sources(
        keys_file=keys.keys_file, issuer_key=issuer, version=keys.issuer_key_version
    )
    return KeyStoreVerifier(store)
