"""The provisioning desk's memory of each card: what was being done to it, how far it got, and
how many authentications it refused us.

One JSON file per card UID in the journal directory (``--journal DIR``, default
``$STATION_CARD_JOURNAL`` or ``~/.local/state/boltcard-station/journal``), written atomically
(mode 0600) *before* every APDU that changes the card and again after it answered. A card
pulled away mid-procedure therefore leaves a record of the last step that may or may not have
reached the card; the card's own key versions (read without a key) settle which.

The journal holds no key: keys live in the key store (:mod:`station.cardtools.keystore`) or
are derived from the issuer key. It does hold the failed-authentication tally: the chip keeps
its own counter (TotFailCtr, NT4H2421Gx §9) and blocks a key for good at its limit, and no
command reads that counter without the key, so this station counts its own failures and stops
at :data:`MAX_FAILED_AUTHS`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from station.cardtools.errors import BadInput, Refused
from station.emulator.state import save_state

MAX_FAILED_AUTHS: Final = 2
"""Failed authentications this station accepts on one card before it refuses to try again."""


def default_dir() -> Path:
    env = os.environ.get("STATION_CARD_JOURNAL")
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "boltcard-station" / "journal"


@dataclass
class Entry:
    uid: str
    operation: str = ""
    status: str = ""  # running | done | interrupted | refused
    key_version: int = 0
    template: str = ""
    step: str = ""
    apdu: int = 0
    keys_changed: list[int] = field(default_factory=list)
    failed_auths: int = 0
    reason: str = ""
    updated: float = 0.0
    history: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Journal:
    """Entries by UID; ``None`` directory means "remember nothing" (dry runs, some tests)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        if directory is not None and directory.exists() and not directory.is_dir():
            raise BadInput(f"--journal {directory}: not a directory")

    def _path(self, uid: bytes) -> Path | None:
        return None if self.directory is None else self.directory / f"{uid.hex().upper()}.json"

    def get(self, uid: bytes) -> Entry:
        path = self._path(uid)
        if path is None or not path.exists():
            return Entry(uid.hex().upper())
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            known = {k: raw[k] for k in Entry.__dataclass_fields__ if k in raw}
            return Entry(**known)
        except (OSError, ValueError, TypeError) as exc:
            raise BadInput(f"journal {path}: unreadable ({type(exc).__name__})") from None

    def put(self, entry: Entry) -> None:
        entry.updated = time.time()
        path = self._path(bytes.fromhex(entry.uid))
        if path is not None:
            save_state(path, entry.to_dict())

    def note(self, entry: Entry, step: str, apdu: int, *, done: bool = False) -> None:
        """Record a step: called before the APDU that makes it (``done=False``) and after."""
        entry.step = step if not done else f"{step}: answered"
        entry.apdu = apdu
        entry.history = [*entry.history[-40:], f"{apdu}: {entry.step}"]
        self.put(entry)

    def check_attempts(self, uid: bytes) -> Entry:
        """The card's entry; :class:`Refused` if it has refused too many authentications."""
        entry = self.get(uid)
        if entry.failed_auths >= MAX_FAILED_AUTHS:
            raise Refused(
                f"card {entry.uid} has refused {entry.failed_auths} authentications from this "
                "station; the chip counts failures and locks a key for good at its limit, so "
                "no more attempts are made. Find the right keys (station card check shows the "
                f"key versions) and clear the count by deleting {self._path(uid)}"
            )
        return entry

    def record_failure(self, entry: Entry, what: str) -> None:
        entry.failed_auths += 1
        entry.history = [*entry.history[-40:], f"failed authentication: {what}"]
        self.put(entry)
