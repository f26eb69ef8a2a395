"""The seam between the station and any NFC reader: two things matter, wait for a card and
transceive bytes on it. Everything multi-step (authentication, chained reads, provisioning) is a
generator flow in ``station.ntag424`` that any backend can drive.

Each backend translates its own exceptions (pyscard's, nfcpy's, socket errors) into the
:class:`ReaderError` family below, so the daemon never imports a backend's exception types.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


class ReaderError(Exception):
    """Base of reader-side failures."""


class ReaderUnavailable(ReaderError):
    """The reader, pcscd or the USB device is gone. The daemon logs it and retries later."""


class CardRemoved(ReaderError):
    """The card left the field during an exchange. Nothing from that exchange may be trusted."""


class CardUnresponsive(ReaderError):
    """The card did not answer (timeout, RF error, not ISO 14443-4)."""


@runtime_checkable
class CardLink(Protocol):
    """A card present in a reader's field, reachable with short APDUs."""

    def transceive(self, apdu: bytes) -> bytes:
        """Send one C-APDU, return the R-APDU (data followed by SW1 SW2)."""
        ...

    def close(self) -> None:
        """Release the card (PC/SC disconnect, nfcpy deactivate). Idempotent."""
        ...


@runtime_checkable
class Reader(Protocol):
    """One physical or virtual reader."""

    name: str
    backend: str  # "pcsc", "nfcpy" or "emulated"

    def wait_for_card(self, timeout: float) -> CardLink | None:
        """Block until a card is present and connected; ``None`` when ``timeout`` passes."""
        ...

    def wait_for_removal(self, timeout: float) -> bool:
        """Block until the field is empty; ``True`` if the card left within ``timeout``."""
        ...

    def feedback(self, accepted: bool) -> None:
        """Green LED + short beep, or red + long beep, where the reader can; else nothing."""
        ...

    def close(self) -> None:
        ...
