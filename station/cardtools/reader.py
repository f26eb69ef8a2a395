"""A card on a reader, whatever the backend; the emulated card's memory loaded from and saved
back to its state file (:mod:`station.emulator.store`), so shell runs chain like a real card."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from station.cardtools.errors import BadInput, EnvironmentProblem, NoCard
from station.ntag424 import flows
from station.ntag424.apdu import Flow
from station.readers import registry
from station.readers.base import CardLink, CardRemoved, Reader, ReaderError
from station.readers.emulated import open_state_card

DEFAULT_TIMEOUT: Final = 10.0


@dataclass(frozen=True)
class ReaderChoice:
    """Where the card is: backend, reader name substring, how long to wait, emulated state."""

    backend: str = "pcsc"
    reader: str = ""
    timeout: float = DEFAULT_TIMEOUT
    state: Path | None = None
    create_state: bool = False
    """Emulated only: a missing state file becomes a factory-fresh card (for provision)."""
    pull_after: int | None = None
    """Emulated only (rehearsal): the card answers this many APDUs, then leaves the field."""
    pull_during: int | None = None
    """Emulated only (rehearsal): the card executes this APDU, its answer is lost, it leaves."""


def _emulated(choice: ReaderChoice) -> tuple[Reader, Callable[[], None]]:
    if choice.state is None:
        raise BadInput("the emulated backend needs --card-state FILE (the card's JSON state)")
    if not choice.state.exists() and not choice.create_state:
        raise BadInput(f"--card-state {choice.state}: no such card state (provision creates one)")
    try:
        reader, _card, save = open_state_card(
            choice.state, create=choice.create_state, pull_after=choice.pull_after,
            pull_during=choice.pull_during, name=choice.reader or "Emulated reader",
        )
    except ValueError as exc:  # StateError is one; so is a bad pull count
        raise BadInput(f"--card-state {choice.state}: {exc}") from None
    except OSError as exc:
        raise BadInput(f"--card-state {choice.state}: {exc}") from None
    return reader, save


def _open(choice: ReaderChoice) -> Reader:
    try:
        return registry.open_reader(choice.backend, choice.reader)
    except ReaderError as exc:
        raise EnvironmentProblem(str(exc)) from None
    except ValueError as exc:
        raise BadInput(str(exc)) from None


@contextmanager
def card_on_reader(choice: ReaderChoice) -> Iterator[CardLink]:
    """Open the reader, wait for a card, yield its link; close everything afterwards.

    With the emulated backend the card comes from ``choice.state`` and its memory (keys,
    counters, files) is written back on the way out, even when the flow failed half-way,
    exactly as a real card keeps whatever was written before it was pulled.
    """
    if choice.backend not in registry.BACKENDS:
        known = ", ".join(registry.BACKENDS)
        raise BadInput(f"unknown backend {choice.backend!r}; use one of {known}")
    if choice.timeout <= 0:
        raise BadInput("--timeout must be more than 0 seconds")
    save: Callable[[], None] | None = None
    if choice.backend == "emulated":
        reader, save = _emulated(choice)
    else:
        reader = _open(choice)
    try:
        try:
            link = reader.wait_for_card(choice.timeout)
        except ReaderError as exc:
            raise EnvironmentProblem(str(exc)) from None
        if link is None:
            raise NoCard(f"no card on {reader.name!r} within {choice.timeout:g} s")
        try:
            yield link
        except CardRemoved:
            raise NoCard(
                "the card left the field during the exchange: hold it still and run the command "
                "again (after an interrupted provision or wipe, run `station card check`)"
            ) from None
        except ReaderError as exc:
            raise EnvironmentProblem(f"reader failed mid-exchange: {exc}") from None
        finally:
            link.close()
    finally:
        reader.close()
        if save is not None:
            save()


def run_flow(link: CardLink, flow: Flow[Any]) -> Any:
    return flows.drive(flow, link.transceive)
