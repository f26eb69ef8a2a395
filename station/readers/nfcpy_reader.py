"""nfcpy backend: USB readers nfcpy drives directly (``usb:…``), serial ones (``tty:…``) and
its simulated radio (``udp:host:port``, see :mod:`station.emulator.bridges.nfc_udp`).

Named ``nfcpy_reader`` on purpose: a module called ``nfc.py`` would shadow nfcpy's package.

Only ISO-DEP cards (Type 4A) become a :class:`CardLink`; other tags in the field are skipped.
nfcpy raises ``IOError`` with ``EBUSY`` when pcscd or the ``pn533_usb`` kernel module holds the
device and ``EACCES`` without a udev rule; both become :class:`ReaderUnavailable` with the fix
in the message (details in firmware_notes/readers.md).

Timing: each ``sense`` waits for an answer (1 s on the udp driver, tens of ms on USB), so
``wait_for_card`` may return up to that long after ``timeout``.
"""

from __future__ import annotations

import errno
import logging
import time
from typing import Any

from station.readers.base import CardRemoved, CardUnresponsive, ReaderError, ReaderUnavailable
from station.readers.pcsc import feedback_apdu

log = logging.getLogger(__name__)

_OPEN_HINTS = {
    errno.EBUSY: "the device is busy: stop pcscd (systemctl stop pcscd.socket pcscd) or "
    "blacklist the pn533_usb kernel module",
    errno.EACCES: "no permission on the USB device: install the udev rule from "
    "firmware_notes/readers.md or run as root",
    errno.ENODEV: "no such reader: check the path (usb, usb:072f:2200, tty:USB0:pn532, "
    "udp:127.0.0.1:54321)",
}


def _nfc() -> Any:
    try:
        import nfc
        import nfc.clf
        import nfc.tag
        import nfc.tag.tt4
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ReaderUnavailable(
            "nfcpy is not installed: pip install 'boltcard-station[nfc]'"
        ) from exc
    return nfc


class NfcpyCardLink:
    """An activated Type 4A tag. ``close`` only forgets it: nfcpy has no DESELECT call, and a
    halted card would no longer answer the presence checks ``wait_for_removal`` relies on."""

    def __init__(self, reader: NfcpyReader, tag: Any) -> None:
        self._reader = reader
        self._tag: Any | None = tag

    def transceive(self, apdu: bytes) -> bytes:
        tag = self._tag
        if tag is None:
            raise CardRemoved("this card link was closed; wait for the next card")
        nfc = _nfc()
        try:
            response = tag.transceive(bytearray(apdu))
        except nfc.tag.TagCommandError as exc:
            raise self._reader._classify(exc, tag) from exc
        except nfc.clf.CommunicationError as exc:
            raise self._reader._classify(exc, tag) from exc
        except OSError as exc:
            raise ReaderUnavailable(f"{self._reader.name}: {exc}") from exc
        if response is None:
            raise CardUnresponsive(f"{self._reader.name}: the card returned no data")
        return bytes(response)

    def close(self) -> None:
        self._tag = None


class NfcpyReader:
    """One nfcpy device, opened lazily on first use (so listing readers opens nothing)."""

    backend = "nfcpy"

    def __init__(self, path: str, *, presence_interval: float = 0.05) -> None:
        self.name = path
        self.path = path
        self._presence_interval = presence_interval
        self._clf: Any | None = None
        self._tag: Any | None = None

    def _frontend(self) -> Any:
        if self._clf is None:
            nfc = _nfc()
            clf = nfc.ContactlessFrontend()
            try:
                opened = clf.open(self.path)
            except OSError as exc:
                hint = _OPEN_HINTS.get(exc.errno or 0, str(exc))
                raise ReaderUnavailable(f"cannot open nfcpy reader {self.path!r}: {hint}") from exc
            if not opened:
                raise ReaderUnavailable(
                    f"cannot open nfcpy reader {self.path!r}: {_OPEN_HINTS[errno.ENODEV]}"
                )
            self._clf = clf
        return self._clf

    def _drop(self) -> None:
        clf, self._clf, self._tag = self._clf, None, None
        if clf is not None:
            try:
                clf.close()
            except Exception as exc:  # closing a vanished USB device may fail: nothing to do
                log.debug("closing %s: %s", self.path, exc)

    def _classify(self, exc: Exception, tag: Any) -> ReaderError:
        """A failed exchange: card gone (presence check fails) or card unresponsive."""
        try:
            present = bool(tag.is_present)
        except OSError:
            return ReaderUnavailable(f"{self.path}: the reader went away ({exc})")
        except Exception:
            present = False
        if not present:
            self._tag = None
            return CardRemoved(f"{self.path}: the card left the field ({exc}); tap again")
        return CardUnresponsive(f"{self.path}: {exc}; hold the card still and retry")

    def wait_for_card(self, timeout: float) -> NfcpyCardLink | None:
        nfc = _nfc()
        deadline = time.monotonic() + timeout
        while True:
            clf = self._frontend()
            try:
                target = clf.sense(nfc.clf.RemoteTarget("106A"), iterations=1)
                tag = nfc.tag.activate(clf, target) if target is not None else None
            except OSError as exc:
                self._drop()
                raise ReaderUnavailable(f"nfcpy reader {self.path!r} failed: {exc}") from exc
            except (nfc.clf.CommunicationError, nfc.tag.TagCommandError) as exc:
                log.debug("activation failed on %s: %s", self.path, exc)
                tag = None
            if isinstance(tag, nfc.tag.tt4.Type4Tag):
                self._tag = tag
                return NfcpyCardLink(self, tag)
            if tag is not None:
                log.info("%s: ignoring a %s, not an ISO-DEP card", self.path, type(tag).__name__)
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def wait_for_removal(self, timeout: float) -> bool:
        nfc = _nfc()
        deadline = time.monotonic() + timeout
        tag = self._tag
        if tag is None:  # nothing activated: the field is empty if sensing finds nothing
            clf = self._frontend()
            try:
                return clf.sense(nfc.clf.RemoteTarget("106A"), iterations=1) is None
            except OSError as exc:
                self._drop()
                raise ReaderUnavailable(f"nfcpy reader {self.path!r} failed: {exc}") from exc
        while True:
            try:
                present = bool(tag.is_present)
            except OSError as exc:
                self._drop()
                raise ReaderUnavailable(f"nfcpy reader {self.path!r} failed: {exc}") from exc
            if not present:
                self._tag = None
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(self._presence_interval)

    def feedback(self, accepted: bool) -> None:
        """On an ACR122U, the same ``FF 00 40`` LED/buzzer APDU nfcpy itself uses; else none."""
        device = getattr(self._clf, "device", None)
        chipset = getattr(device, "chipset", None)
        if chipset is None or not hasattr(chipset, "ccid_xfr_block"):
            return
        try:
            chipset.ccid_xfr_block(bytearray(feedback_apdu(accepted)))
        except Exception as exc:  # feedback is a nicety: never fail a tap over it
            log.debug("no feedback on %s: %s", self.path, exc)

    def close(self) -> None:
        self._drop()

    def __repr__(self) -> str:
        return f"NfcpyReader({self.path!r})"
