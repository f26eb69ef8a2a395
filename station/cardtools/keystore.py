"""The provisioning desk's key store: every card's five keys, encrypted at rest.

One file (mode 0600) holding one Fernet token (``cryptography.fernet``: AES-128-CBC and
HMAC-SHA256, the MAC checked before anything is decrypted); inside, JSON
``{"format": ..., "cards": {UID: {"k0".."k4", "version", "lnurlw"}}}``. The master key is a
Fernet key (urlsafe base64 of 32 bytes) from ``$STATION_KEYSTORE_KEY`` or ``--keystore-key-file``;
:func:`new_master_key` makes one. A wrong master key or a tampered file is one error:
"cannot decrypt", nothing is guessed.

Why a file and not the tracker's database: the station that programs cards may be offline, and
the keys must be stored *before* the card is written (``provision --random-keys``), so the
store is local and every write is atomic (temporary file, fsync, rename).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Final

from cryptography.fernet import Fernet, InvalidToken

from station.cardtools.errors import BadInput
from station.emulator.state import save_state
from station.ntag424 import keys

FORMAT: Final = "boltcard-station/keystore/1"
ENV_MASTER: Final = "STATION_KEYSTORE_KEY"


def new_master_key() -> str:
    return Fernet.generate_key().decode("ascii")


def master_key(key_file: Path | None = None) -> bytes:
    """The master key from ``key_file`` or ``$STATION_KEYSTORE_KEY``; :class:`BadInput` if none."""
    if key_file is not None:
        try:
            text = key_file.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"--keystore-key-file {key_file}: {type(exc).__name__}") from None
    else:
        text = os.environ.get(ENV_MASTER, "").strip()
        if not text:
            raise BadInput(
                f"the key store needs a master key: set ${ENV_MASTER} (make one with "
                "`station card keystore new-master-key`) or give --keystore-key-file FILE"
            )
    try:
        Fernet(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise BadInput("the key store master key is not a Fernet key (44 base64 chars)") from None
    return text.encode("ascii")


class KeyStoreFile:
    """Cards' keys by UID in one encrypted file; implements ``keys_for(uid)``."""

    def __init__(self, path: Path, master: bytes) -> None:
        self.path = path
        self._fernet = Fernet(master)
        self._cards: dict[str, dict[str, Any]] = self._load()

    def __repr__(self) -> str:
        return f"KeyStoreFile({str(self.path)!r}, {len(self._cards)} cards)"

    def _load(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            if not self.path.parent.is_dir():
                raise BadInput(f"--keystore {self.path}: the directory does not exist")
            return {}
        try:
            raw = json.loads(self._fernet.decrypt(_read_file(self.path)))
        except InvalidToken:
            raise BadInput(
                f"--keystore {self.path}: cannot decrypt (wrong master key, or not a key store)"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BadInput(f"--keystore {self.path}: unreadable ({type(exc).__name__})") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise BadInput(f"--keystore {self.path}: not a key store")
        cards = raw.get("cards")
        if not isinstance(cards, dict):
            raise BadInput(f"--keystore {self.path}: no cards")
        return cards

    def _save(self) -> None:
        plain = json.dumps({"format": FORMAT, "cards": self._cards}, sort_keys=True).encode()
        save_state(self.path, {"fernet": self._fernet.encrypt(plain).decode("ascii")})

    def __len__(self) -> int:
        return len(self._cards)

    def uids(self) -> list[str]:
        return sorted(self._cards)

    def put(self, uid: bytes, card_keys: keys.KeySet, lnurlw: str = "") -> None:
        """Store (or replace) a card's keys; on disk before this returns."""
        self._cards[uid.hex().upper()] = {
            **card_keys.as_hex(), "version": card_keys.version, "lnurlw": lnurlw,
        }
        self._save()

    def keys_for(self, uid: bytes) -> keys.KeySet | None:
        entry = self._cards.get(uid.hex().upper())
        if entry is None:
            return None
        return keys.KeySet(
            *(bytes.fromhex(entry[f"k{n}"]) for n in range(5)), version=int(entry["version"])
        )

    def lnurlw(self, uid: bytes) -> str:
        return str(self._cards.get(uid.hex().upper(), {}).get("lnurlw", ""))

    def export(self, uid: bytes, kind: str) -> dict[str, Any]:
        """``new_bolt_card_response`` (``kind="response"``) or wipe JSON (``"wipe"``)."""
        card_keys = self.keys_for(uid)
        if card_keys is None:
            raise BadInput(f"the key store has no card {uid.hex().upper()}")
        if kind == "wipe":
            return keys.wipe_json(card_keys)
        out = keys.new_bolt_card_response(card_keys, self.lnurlw(uid))
        out.update(uid=uid.hex(), version=card_keys.version)
        return out

    def import_json(self, uid: bytes, data: Any) -> keys.KeySet:
        """A ``new_bolt_card_response``, BTCPay ``{LNURLW, K0..K4}`` or a wipe JSON."""
        program = parse_keys_json(data, "import")
        self.put(uid, program.keys, program.lnurlw or "")
        return program.keys


def _read_file(path: Path) -> bytes:
    raw = json.loads(path.read_text(encoding="utf-8"))
    return str(raw["fernet"]).encode("ascii")


def parse_keys_json(data: Any, where: str) -> keys.CardProgram:
    """BTCPay's ``{LNURLW, K0..K4}`` / a ``new_bolt_card_response``, or a wipe JSON."""
    from station.ntag424.errors import UsageError

    try:
        if isinstance(data, dict) and data.get("action") == "wipe":
            return keys.CardProgram(keys.parse_wipe_json(data), "")
        return keys.parse_new_bolt_card_response(data)
    except UsageError as exc:
        raise BadInput(f"{where}: {exc}") from None
