"""An in-process reader holding zero or one emulated card: the fastest honest stand-in for a
real reader in unit tests and ``station demo``.

It keeps the properties the daemon relies on: ``wait_for_card`` blocks until ``present()``,
a link obtained for one presentation raises :class:`CardRemoved` once that card was removed
(even if another card is presented later), and feedback goes to the card as the ACR122U
``FF 00 40`` pseudo-APDU, where ``EmulatedCard`` records it in ``last_feedback``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from station.readers.base import CardRemoved
from station.readers.pcsc import feedback_apdu

if TYPE_CHECKING:
    from station.emulator.card import EmulatedCard


class EmulatedCardLike(Protocol):
    """The part of ``station.emulator.card.EmulatedCard`` a reader needs."""

    def transceive(self, apdu: bytes) -> bytes: ...

    def deselect(self) -> None: ...


class EmulatedCardLink:
    """A link to one presentation of a card; dead after that card is removed."""

    def __init__(self, reader: EmulatedReader, card: EmulatedCardLike, generation: int) -> None:
        self._reader = reader
        self._card = card
        self._generation = generation
        self._closed = False

    def transceive(self, apdu: bytes) -> bytes:
        if self._closed:
            raise CardRemoved("this card link was closed; wait for the next card")
        return self._reader._transceive(self._card, self._generation, bytes(apdu))

    def close(self) -> None:
        """Release the card: like a PC/SC disconnect with reset, the card forgets its session."""
        if self._closed:
            return
        self._closed = True
        self._reader._release(self._card, self._generation)


class EmulatedReader:
    """Thread-safe: tests present/remove from one thread while the daemon waits in another."""

    backend = "emulated"

    def __init__(
        self,
        name: str = "Emulated reader",
        *,
        pull_after: int | None = None,
        pull_during: int | None = None,
    ) -> None:
        """``pull_after=N``: the card answers N APDUs, then leaves the field. ``pull_during=N``:
        the card executes the Nth APDU but its answer is lost, and it leaves. Rehearsals of a
        card pulled away mid-procedure (the card keeps what it wrote, like a real chip)."""
        for value, option in ((pull_after, "pull_after"), (pull_during, "pull_during")):
            if value is not None and value < (0 if option == "pull_after" else 1):
                raise ValueError(f"{option} must be at least {0 if option == 'pull_after' else 1}")
        self.name = name
        self.pull_after = pull_after
        self.pull_during = pull_during
        self.apdus = 0  # APDUs the card executed (pulls count this, across presentations)
        self._cond = threading.Condition()
        self._card: EmulatedCardLike | None = None
        self._generation = 0  # bumped on every present/remove: stale links notice
        self.feedback_log: list[bool] = []  # accepted/rejected, in order, for tests and the demo

    # --- test and demo controls -------------------------------------------------------------
    def present(self, card: EmulatedCardLike) -> None:
        """Put ``card`` in the field (replacing any card already there)."""
        with self._cond:
            self._card = card
            self._generation += 1
            self._cond.notify_all()

    def remove(self) -> None:
        """Take the card out of the field; a link to it now raises :class:`CardRemoved`."""
        with self._cond:
            if self._card is not None:
                self._card.deselect()
            self._card = None
            self._generation += 1
            self._cond.notify_all()

    @property
    def card(self) -> EmulatedCardLike | None:
        with self._cond:
            return self._card

    # --- Reader protocol --------------------------------------------------------------------
    def wait_for_card(self, timeout: float) -> EmulatedCardLink | None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._card is not None, timeout):
                return None
            assert self._card is not None
            return EmulatedCardLink(self, self._card, self._generation)

    def wait_for_removal(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._card is None, timeout)

    def feedback(self, accepted: bool) -> None:
        self.feedback_log.append(accepted)
        with self._cond:
            if self._card is not None:
                # Like an ACR122U: the pseudo-APDU reaches the reader (here: the card records
                # it). An error answer is ignored, exactly as the PC/SC backend does.
                self._card.transceive(feedback_apdu(accepted))

    def close(self) -> None:
        self.remove()

    # --- link plumbing ----------------------------------------------------------------------
    def _transceive(self, card: EmulatedCardLike, generation: int, apdu: bytes) -> bytes:
        with self._cond:
            if self._card is not card or self._generation != generation:
                raise CardRemoved("the card left the field during the exchange; tap again")
            if self.pull_after is not None and self.apdus >= self.pull_after:
                self.remove()
                raise CardRemoved(f"rehearsal: the card left the field after {self.apdus} APDUs")
            # The card is called under the lock so remove() cannot interleave mid-APDU.
            answer = card.transceive(apdu)
            self.apdus += 1
            if self.pull_during is not None and self.apdus >= self.pull_during:
                self.remove()
                raise CardRemoved(
                    f"rehearsal: the card left the field during APDU {self.apdus}, answer lost"
                )
            return answer

    def _release(self, card: EmulatedCardLike, generation: int) -> None:
        with self._cond:
            if self._card is card and self._generation == generation:
                card.deselect()

    def __repr__(self) -> str:
        return f"EmulatedReader({self.name!r})"


def open_state_card(
    path: Path,
    *,
    create: bool = False,
    uid: bytes | None = None,
    pull_after: int | None = None,
    pull_during: int | None = None,
    name: str = "Emulated reader",
) -> tuple[EmulatedReader, EmulatedCard, Callable[[], None]]:
    """(reader, card, save): the emulated card saved at ``path`` presented on a new reader.

    The one way every command (``station card ...``, ``station read``, ``station charge``)
    puts a state file in a field. ``create`` makes a factory-fresh card when the file is
    missing (random UID unless ``uid``). A file that does not load raises ``StateError`` and is
    left exactly as it was; ``save()`` writes the card's memory back (call it also after a
    failure: a real card keeps whatever was written before it left the field).
    """
    from station.emulator import store

    if not path.exists() and not create:
        raise FileNotFoundError(f"{path}: no such emulated card state")
    card, _created = store.load_or_create(path, uid)
    if uid is not None and card.uid != uid:
        raise store.StateError(f"{path} holds card {card.uid.hex().upper()}, not the UID given")
    reader = EmulatedReader(name, pull_after=pull_after, pull_during=pull_during)
    reader.present(card)
    return reader, card, lambda: store.save(path, card)
