"""An emulated card on nfcpy's simulated ``udp`` radio, for testing the nfcpy backend.

nfcpy can *read* Type 4 tags over its ``udp:host:port`` driver but has no Type 4 *emulation*.
This module fills that gap: it listens as an NFC-A target (``LocalTarget`` 106A with the card's
UID, ``SEL_RES`` 20h = ISO 14443-4 compliant), answers RATS with an ATS and then plays the
PICC side of the ISO/IEC 14443-4 block protocol, handing each complete APDU to the card's
``transceive``. The PICC rules implemented (ISO/IEC 14443-4 §7.5.4): block-number toggling,
command chaining (R(ACK) per chained I-block), response chaining when an answer exceeds the
reader's FSD, R(NAK) presence checks (answered with R(ACK)), retransmission on R(NAK)/R(ACK)
carrying the current block number, and S(DESELECT).

The listener binds 127.0.0.1 (nfcpy's own driver binds 0.0.0.0; tests must stay on loopback)
and keeps that socket for as long as the card is "in the field", running nfcpy's own udp
anticollision (``listen_tta`` logic) on it. "Removing" the card closes the socket: the reader
sees timeouts, as with a card pulled out of the RF field.
``python -m station.emulator.bridges.nfc_udp --port 54321`` serves a card from a shell.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from station.emulator import store
from station.emulator.card import DEFAULT_UID

log = logging.getLogger(__name__)

DEFAULT_PORT = 54321
# TL=06, T0=77 (TA, TB, TC present; FSCI=7 → FSC 128), TA=77 (bit rates), TB=71 (FWI=7 ≈ 38.7 ms,
# SFGI=1), TC=02 (CID supported), historical byte 80: what NTAG 424 DNA answers to RATS.
DEFAULT_ATS = bytes.fromhex("067777710280")
SENS_RES = bytes.fromhex("4400")  # ATQA of a 7-byte-UID NTAG 424 DNA
SEL_RES = 0x20  # SAK: UID complete, ISO/IEC 14443-4 compliant
FSD_TABLE = (16, 24, 32, 40, 48, 64, 96, 128, 256)

_SLICE = 0.05  # how often the serving thread checks for removal while idle in a session


class VirtualCard(Protocol):
    """What this module needs from ``station.emulator.card.EmulatedCard``."""

    @property
    def uid(self) -> bytes: ...

    def transceive(self, apdu: bytes) -> bytes: ...

    def deselect(self) -> None: ...


class IsoDepCard:
    """The PICC side of ISO 14443-4 as a pure state machine: frame in, frame (or None) out.

    No sockets, so each rule is unit-testable; :class:`NfcUdpCard` feeds it from the radio.
    """

    def __init__(self, card: VirtualCard, ats: bytes = DEFAULT_ATS) -> None:
        self.card = card
        self.ats = ats
        self.fsd = 256
        self.active = False  # RATS seen, not deselected
        self._block = 1  # PICC block number starts at 1 (§7.5.3.2)
        self._last: bytes | None = None  # last block sent, for retransmission
        self._rx = bytearray()  # command chaining buffer
        self._tx = b""  # the rest of a chained response

    def rats(self, frame: bytes) -> bytes | None:
        """Answer RATS (E0 FSDI|CID): the ATS. Anything else is not for us."""
        if len(frame) < 2 or frame[0] != 0xE0:
            return None
        self.fsd = FSD_TABLE[min(frame[1] >> 4, 8)]
        self.active, self._block, self._last = True, 1, None
        self._rx.clear()
        self._tx = b""
        return self.ats

    def _send(self, block: bytes) -> bytes:
        self._last = block
        return block

    def _next_chunk(self) -> bytes:
        room = self.fsd - 3  # PCB + CRC_A
        chunk, self._tx = self._tx[:room], self._tx[room:]
        pcb = (0x12 if self._tx else 0x02) | self._block
        return self._send(bytes([pcb]) + chunk)

    def frame(self, frame: bytes) -> bytes | None:
        """One block from the PCD; the block to answer with, ``None`` for silence."""
        if not frame:
            return None
        pcb = frame[0]
        if pcb & 0xE2 == 0x02:  # I-block
            # CID (bit 3) / NAD (bit 2) bytes follow the PCB; nfcpy never sends them
            start = 1 + bool(pcb & 0x08) + bool(pcb & 0x04)
            self._block = pcb & 1  # toggled (rule D): now equal to the PCD's block number
            self._rx += frame[start:]
            if pcb & 0x10:  # chained command: acknowledge, wait for the rest
                return self._send(bytes([0xA2 | self._block]))
            apdu, self._rx = bytes(self._rx), bytearray()
            self._tx = self.card.transceive(apdu)
            return self._next_chunk()
        if pcb & 0xE6 == 0xA2:  # R-block
            nak, number = bool(pcb & 0x10), pcb & 1
            if number == self._block:  # rule 11: the PCD missed our last block
                return self._last if self._last is not None else bytes([0xA2 | self._block])
            if nak:  # rule 12: presence check or lost block: R(ACK)
                return bytes([0xA2 | self._block])
            if self._tx:  # rule 13: continue our chained response
                self._block ^= 1
                return self._next_chunk()
            return None
        if pcb & 0xF7 == 0xC2:  # S(DESELECT)
            self.deselect()
            return bytes([pcb])
        return None

    def deselect(self) -> None:
        self.active = False
        self._rx.clear()
        self._tx = b""
        self.card.deselect()


def _loopback_device(host: str, port: int) -> Any:
    """nfcpy's udp Device, bound to ``host`` instead of 0.0.0.0."""
    import nfc.clf.udp

    class LoopbackDevice(nfc.clf.udp.Device):  # type: ignore[misc]
        def _bind_socket(self, time_to_return: float) -> bool:
            try:
                self.socket.bind((self.addr[0], self.addr[1]))
            except OSError as exc:
                log.debug("bind to %s:%d failed: %s", *self.addr, exc)
                return False
            return True

    device = LoopbackDevice(host, port)
    device._vendor_name, device._device_name, device._chipset_name = "station", "card", "UDP"
    return device


class NfcUdpCard:
    """Serves one card on ``udp:host:port`` in a background thread.

    ``insert()`` starts listening (the reader activates the card on its next poll),
    ``remove()`` stops answering and closes the socket (the reader sees the card leave).
    """

    def __init__(
        self,
        card: VirtualCard | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        ats: bytes = DEFAULT_ATS,
    ) -> None:
        self.card = card
        self.host, self.port, self.ats = host, port, ats
        self.activations = 0
        self.apdus = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listening = threading.Event()

    @property
    def inserted(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def insert(self, card: VirtualCard | None = None, timeout: float = 2.0) -> None:
        """Start answering as ``card``; returns once the socket is bound."""
        if card is not None:
            self.card = card
        if self.card is None:
            raise ValueError("insert() needs a card")
        self.remove()
        self._stop.clear()
        self._listening.clear()
        self._thread = threading.Thread(
            target=self._serve, args=(self.card,), name="nfc-udp-card", daemon=True
        )
        self._thread.start()
        self._listening.wait(timeout)

    def remove(self, timeout: float = 3.0) -> None:
        """Take the card out of the field. Idempotent."""
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def close(self) -> None:
        self.remove()

    def _serve(self, card: VirtualCard) -> None:
        import nfc
        import nfc.clf

        clf = nfc.ContactlessFrontend()
        clf.device = _loopback_device(self.host, self.port)
        picc = IsoDepCard(card, self.ats)
        try:
            while not self._stop.is_set():
                target = nfc.clf.LocalTarget(
                    "106A", sens_res=SENS_RES, sdd_res=bytes(card.uid), sel_res=bytes([SEL_RES])
                )
                activated = self._listen(clf, target)
                if activated is None or self._stop.is_set():
                    continue
                first = bytes(activated.tt4_cmd or b"")
                reply = picc.rats(first)
                if reply is None:
                    continue
                self.activations += 1
                self._session(clf, picc, reply)
        except Exception:  # keep the process alive, but say why the card went silent
            log.exception("emulated card on udp:%s:%d failed", self.host, self.port)
        finally:
            with contextlib.suppress(Exception):
                if picc.active:
                    picc.deselect()
            clf.close()

    def _listen(self, clf: Any, target: Any) -> Any:
        """Wait (0.25 s) to be activated as ``target`` by nfcpy's udp anticollision.

        Not ``clf.listen``: it closes and re-binds the socket on every call, and a reader's
        REQA sent in that gap is lost (costing the reader a 1 s sense timeout). Like a card
        that stays in the field, we bind once and keep answering on the same socket.
        """
        device = clf.device
        device._create_socket()  # no-op while a socket exists (nfcpy creates one unbound)
        bound = device.socket.getsockname()[1] == self.port
        if not bound and not device._bind_socket(time.time() + 1.0):
            raise OSError(f"udp port {self.host}:{self.port} is already in use")
        self._listening.set()
        with clf.lock:
            activated = device._listen_tta(target, time.time() + 0.25)
            clf.target = activated
        return activated

    def _session(self, clf: Any, picc: IsoDepCard, reply: bytes | None) -> None:
        """Serve blocks until DESELECT, RF off, a new activation or removal."""
        import nfc.clf

        while not self._stop.is_set():
            try:
                frame = clf.exchange(reply, _SLICE)
            except nfc.clf.TimeoutError:
                reply = None  # nothing to resend: keep listening for the next block
                continue
            except nfc.clf.BrokenLinkError:  # the reader switched its field off
                picc.deselect()
                return
            except nfc.clf.CommunicationError as exc:
                log.debug("garbled frame ignored: %s", exc)
                reply = None
                continue
            if frame is None:
                picc.deselect()
                return
            frame = bytes(frame)
            if frame[:1] in (b"\x26", b"\x52", b"\x50"):  # REQA, WUPA, HLTA: a new activation
                picc.deselect()
                return
            if frame[0] & 0xE2 == 0x02:
                self.apdus += 1
            reply = picc.frame(frame)
            if not picc.active:  # answered S(DESELECT)
                with contextlib.suppress(nfc.clf.CommunicationError):
                    clf.exchange(reply, 0)
                return


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m station.emulator.bridges.nfc_udp",
        description="Serve an emulated NTAG 424 DNA on nfcpy's udp driver until Ctrl-C.",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--uid", type=bytes.fromhex, help="7-byte UID (hex) for a fresh card")
    parser.add_argument(
        "--card-state", "--state", dest="state",
        help="card state JSON (loaded if it exists, saved on exit)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    state = Path(args.state) if args.state else None
    card, _new = store.load_or_create(state, args.uid or DEFAULT_UID, save_new=False)
    server = NfcUdpCard(card, port=args.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server.insert()
    log.info("card on udp:127.0.0.1:%d; Ctrl-C removes it", args.port)
    try:
        while server.inserted and not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.remove()
        if state is not None:
            store.save(state, card)
    return 0


if __name__ == "__main__":
    sys.exit(main())
