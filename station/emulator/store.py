"""An emulated card's memory on disk: load it, or create a factory-fresh card, and save it back.

The one place that decides how a state file becomes a card. The card tools, ``station card
emulate``, ``station read``, the demo and the vpcd / nfcpy-udp bridges all come through here, so
a card written by one is read by the others. Files are written atomically, mode 0600 (they hold
keys): :func:`station.emulator.state.save_state`.
"""

from __future__ import annotations

import os
from pathlib import Path

from station.emulator.card import EmulatedCard
from station.emulator.state import StateError, load_state, save_state

__all__ = ["StateError", "load", "load_or_create", "random_uid", "save"]


def random_uid() -> bytes:
    """A 7-byte NXP-style UID (manufacturer byte 04, six random bytes)."""
    return b"\x04" + os.urandom(6)


def load(path: Path) -> EmulatedCard:
    """The card saved at ``path``; :class:`StateError` (or ``OSError``) if it cannot be read."""
    return EmulatedCard.from_state(load_state(path))


def load_or_create(
    path: Path | None, uid: bytes | None = None, *, save_new: bool = True
) -> tuple[EmulatedCard, bool]:
    """(card, created): the card saved at ``path``, or a factory-fresh one with ``uid``
    (random when ``None``), saved at once unless ``save_new`` is false or there is no path."""
    if path is not None and path.exists():
        return load(path), False
    card = EmulatedCard.factory(uid if uid is not None else random_uid())
    if path is not None and save_new:
        save(path, card)
    return card, True


def save(path: Path, card: EmulatedCard) -> None:
    """Write the card's non-volatile memory (keys, counters, files) back to ``path``."""
    save_state(path, card.to_state())
