"""Find and open readers by backend and a substring of their name.

Backends are imported lazily, so a station without pyscard (or without nfcpy) still lists and
opens what it has; a missing backend shows up as a problem in :func:`survey`, not a crash.

Listing never opens a device: PC/SC names come from pcscd, nfcpy USB devices from the USB bus
(vendor/product ids in nfcpy's own driver table), so listing cannot steal a reader from the
daemon. nfcpy serial readers (``tty:USB0:pn532``) and the ``udp:`` radio cannot be discovered
without opening them; open them by path.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from station.readers.base import Reader, ReaderError, ReaderUnavailable

BACKENDS: tuple[str, ...] = ("pcsc", "nfcpy", "emulated")
NFCPY_PATH_PREFIXES = ("usb", "tty:", "com:", "udp")


@dataclass(frozen=True)
class ReaderInfo:
    backend: str
    name: str  # what open_reader(backend, name) accepts
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class Survey:
    """Readers found on every backend, and why a backend could not be asked."""

    readers: list[ReaderInfo] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "readers": [r.as_dict() for r in self.readers],
            "backends": {
                b: {"available": b not in self.problems, "error": self.problems.get(b)}
                for b in BACKENDS
            },
        }


def _pcsc_readers() -> list[ReaderInfo]:
    from station.readers import pcsc

    return [ReaderInfo("pcsc", name) for name in pcsc.list_reader_names()]


def _nfcpy_readers() -> list[ReaderInfo]:
    try:
        import usb1
        from nfc.clf.device import usb_device_map
    except ImportError as exc:
        raise ReaderUnavailable(
            "nfcpy is not installed: pip install 'boltcard-station[nfc]'"
        ) from exc
    found: list[ReaderInfo] = []
    try:
        with usb1.USBContext() as ctx:
            for dev in ctx.getDeviceIterator(skip_on_error=True):
                vid, pid = dev.getVendorID(), dev.getProductID()
                driver = usb_device_map.get((vid, pid))
                if driver is None:
                    continue
                path = f"usb:{dev.getBusNumber():03d}:{dev.getDeviceAddress():03d}"
                detail = f"{vid:04x}:{pid:04x} (nfcpy driver {driver})"
                if driver == "acr122":
                    detail += "; pcscd claims it too: stop pcscd to use it with nfcpy"
                found.append(ReaderInfo("nfcpy", path, detail))
    except usb1.USBError as exc:
        raise ReaderUnavailable(f"cannot enumerate USB devices: {exc}") from exc
    return found


def survey(backends: tuple[str, ...] = ("pcsc", "nfcpy")) -> Survey:
    """Every reader each backend can see now (the emulated backend has none to list)."""
    result = Survey()
    listers = {"pcsc": _pcsc_readers, "nfcpy": _nfcpy_readers}
    for backend in backends:
        lister = listers.get(backend)
        if lister is None:
            continue
        try:
            result.readers.extend(lister())
        except ReaderError as exc:
            result.problems[backend] = str(exc)
    return result


def list_readers() -> list[ReaderInfo]:
    """The readers of all backends that are available; see :func:`survey` for the problems."""
    return survey().readers


def _pick(backend: str, name: str, candidates: list[ReaderInfo]) -> ReaderInfo:
    wanted = name.lower()
    matches = [r for r in candidates if wanted in r.name.lower() or wanted in r.detail.lower()]
    if not matches:
        seen = ", ".join(repr(r.name) for r in candidates) or "none"
        what = f"matching {name!r}" if name else "at all"
        raise ReaderUnavailable(f"no {backend} reader {what} (readers seen: {seen})")
    return matches[0]


def open_reader(backend: str, name: str = "") -> Reader:
    """Open the first reader of ``backend`` whose name contains ``name`` (case-insensitive).

    For nfcpy, ``name`` may also be an nfcpy path (``usb:072f:2200``, ``tty:USB0:pn532``,
    ``udp:127.0.0.1:54321``), opened as given.
    """
    if backend == "pcsc":
        from station.readers.pcsc import PcscReader

        return PcscReader(_pick("pcsc", name, _pcsc_readers()).name)
    if backend == "nfcpy":
        from station.readers.nfcpy_reader import NfcpyReader

        if name.startswith(NFCPY_PATH_PREFIXES):
            return NfcpyReader(name)
        return NfcpyReader(_pick("nfcpy", name, _nfcpy_readers()).name)
    if backend == "emulated":
        from station.readers.emulated import EmulatedReader

        return EmulatedReader(name or "Emulated reader")
    raise ValueError(f"unknown reader backend {backend!r}; use one of {', '.join(BACKENDS)}")
