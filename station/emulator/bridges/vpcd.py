"""Put an emulated card behind the real pcscd, through vsmartcard's ``vpcd`` reader driver.

vpcd is a pcscd driver that *listens* on TCP (35963 for slot ``Virtual PCD 00 00``) for a virtual
card. Connecting is inserting the card; closing the socket is pulling it out. The wire protocol
is tiny: every message is a 2-byte big-endian length then a body. A 1-byte body is a control code
(power off, power on, reset, get ATR); anything longer is a C-APDU and we answer the R-APDU.

Latency: Debian's vpcd writes the length and the body with two ``send()`` calls. With Nagle on its
side and delayed ACK on ours each APDU would take ~44 ms, so ``TCP_QUICKACK`` is set before every
``recv`` (Linux clears it again after use). That brings a round trip down to tens of µs.

Run as ``python -m station.emulator.bridges.vpcd --state FILE`` to keep a card inserted from a shell
(the card's state is loaded from and saved back to FILE when the card supports it).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import socket
import struct
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from station.emulator import store
from station.emulator.card import DEFAULT_UID

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 35963
# ATR a PC/SC contactless reader (PC/SC part 3) builds for an ISO 14443-4 card without
# historical bytes: 3B 8n 80 01 + TCK. NTAG 424 DNA shows exactly this on an ACR122U.
DEFAULT_ATR = bytes.fromhex("3B8180018080")

CTRL_POWER_OFF = 0x00
CTRL_POWER_ON = 0x01
CTRL_RESET = 0x02
CTRL_GET_ATR = 0x04


class VirtualCard(Protocol):
    """What the bridge needs from a card (``station.emulator.card.EmulatedCard`` fits)."""

    def transceive(self, apdu: bytes) -> bytes: ...

    def power_cycle(self) -> None: ...


class VpcdError(OSError):
    """The vpcd reader is not reachable (pcscd not running, or not configured with vpcd)."""


def _quickack(sock: socket.socket) -> None:
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    """Read exactly ``size`` bytes; ``None`` when the peer closed the connection."""
    chunks = bytearray()
    while len(chunks) < size:
        _quickack(sock)
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def answer(card: VirtualCard, body: bytes, atr: bytes) -> bytes | None:
    """The bytes to send back for one vpcd message (``None``: nothing to send).

    Pure, so the protocol can be unit-tested without sockets.
    """
    if len(body) == 1:
        code = body[0]
        if code == CTRL_GET_ATR:
            return atr
        if code in (CTRL_POWER_OFF, CTRL_POWER_ON, CTRL_RESET):
            # A contactless card loses its session state on any of these; vpcd expects no reply.
            if code != CTRL_POWER_ON:
                card.power_cycle()
            return None
        log.debug("vpcd: unknown control code %02X ignored", code)
        return None
    return card.transceive(body)


class VpcdBridge:
    """Connects one card to vpcd in a background thread.

    ``insert()`` connects (the reader sees a card ~0.1–0.4 s later), ``remove()`` disconnects.
    The same bridge can insert again, with the same or another card.
    """

    def __init__(
        self,
        card: VirtualCard | None = None,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        atr: bytes = DEFAULT_ATR,
    ) -> None:
        self.card = card
        self.host, self.port, self.atr = host, port, atr
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.apdus = 0  # APDUs served since creation: tests and bench read it

    @property
    def inserted(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def insert(self, card: VirtualCard | None = None, timeout: float = 2.0) -> None:
        """Connect the card to vpcd. Raises :class:`VpcdError` when nothing listens."""
        if card is not None:
            self.card = card
        if self.card is None:
            raise ValueError("insert() needs a card")
        self.remove()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except OSError as exc:
            raise VpcdError(
                f"cannot reach vpcd on {self.host}:{self.port} ({exc.strerror or exc}); is pcscd "
                "running with the vsmartcard-vpcd reader configured, and no other card "
                "connected to this slot?"
            ) from exc
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._sock = sock
            self._thread = threading.Thread(
                target=self._serve, args=(sock, self.card), name="vpcd-card", daemon=True
            )
            self._thread.start()

    def remove(self, timeout: float = 2.0) -> None:
        """Disconnect: the reader reports the card gone ~0.1–0.3 s later. Idempotent."""
        with self._lock:
            sock, thread = self._sock, self._thread
            self._sock = self._thread = None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def close(self) -> None:
        self.remove()

    def _serve(self, sock: socket.socket, card: VirtualCard) -> None:
        try:
            while True:
                header = _recv_exact(sock, 2)
                if header is None:
                    break
                (length,) = struct.unpack(">H", header)
                body = _recv_exact(sock, length)
                if body is None:
                    break
                reply = answer(card, body, self.atr)
                if len(body) > 1:
                    self.apdus += 1
                if reply is not None:
                    sock.sendall(struct.pack(">H", len(reply)) + reply)
        except OSError as exc:
            log.debug("vpcd link closed: %s", exc)
        except Exception:  # a card bug must not kill the process silently
            log.exception("emulated card failed; removing it from vpcd")
        finally:
            with contextlib.suppress(OSError):
                sock.close()
            with self._lock:
                if self._sock is sock:
                    self._sock = self._thread = None

    def __enter__(self) -> VpcdBridge:
        self.insert()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m station.emulator.bridges.vpcd",
        description="Insert an emulated NTAG 424 DNA into pcscd's vpcd reader until Ctrl-C.",
    )
    parser.add_argument(
        "--card-state", "--state", dest="state", type=Path,
        help="card state JSON (loaded if it exists, saved on exit)"
    )
    parser.add_argument("--uid", type=bytes.fromhex, help="7-byte UID (hex) for a fresh card")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    card, _new = store.load_or_create(args.state, args.uid or DEFAULT_UID, save_new=False)
    bridge = VpcdBridge(card, host=args.host, port=args.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        bridge.insert()
    except VpcdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 4
    log.info("card inserted into vpcd at %s:%d; Ctrl-C removes it", args.host, args.port)
    try:
        while not stop.wait(0.2) and bridge.inserted:
            pass
    except KeyboardInterrupt:
        pass
    finally:
        bridge.remove()
        if args.state is not None:
            store.save(args.state, card)
    return 0


if __name__ == "__main__":
    sys.exit(main())
