"""The vpcd wire protocol, checked against a stand-in for pcscd's vpcd driver.

The real driver is exercised in test_pcsc.py; this file pins the framing itself (2-byte
big-endian length, 1-byte control codes, APDUs) so a regression shows without pcscd installed.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest

from station.emulator.bridges.vpcd import DEFAULT_ATR, VpcdBridge, VpcdError

from .fakes import StubCard


@pytest.fixture
def driver() -> Iterator[socket.socket]:
    """Listens like vpcd does (but on loopback and an ephemeral port)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(5.0)
    yield server
    server.close()


def _send(conn: socket.socket, body: bytes) -> None:
    conn.sendall(struct.pack(">H", len(body)) + body)


def _recv(conn: socket.socket) -> bytes:
    def exact(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            assert chunk, "bridge closed the connection"
            data += chunk
        return data

    (length,) = struct.unpack(">H", exact(2))
    return exact(length)


def test_bridge_speaks_the_vpcd_protocol(driver: socket.socket) -> None:
    card = StubCard()
    bridge = VpcdBridge(card, port=driver.getsockname()[1])
    bridge.insert()
    conn, _ = driver.accept()
    conn.settimeout(5.0)
    try:
        _send(conn, b"\x04")  # get ATR
        assert _recv(conn) == DEFAULT_ATR
        _send(conn, b"\x01")  # power on: no answer expected
        _send(conn, bytes.fromhex("FFCA000000"))
        assert _recv(conn) == card.uid + b"\x90\x00"
        _send(conn, b"\x02")  # reset: the card loses its state, no answer
        # a 256-byte answer keeps its 2-byte length prefix intact
        _send(conn, bytes.fromhex("00A4040007D276000085010100"))
        assert _recv(conn) == b"\x90\x00"
        _send(conn, bytes.fromhex("00B0000000"))
        assert _recv(conn) == bytes(range(256)) + b"\x90\x00"
        assert card.resets == 1
        assert bridge.apdus == 3
        bridge.remove()
        assert conn.recv(1) == b""  # removal closes the link: vpcd reports the card gone
    finally:
        conn.close()
        bridge.remove()


def test_driver_closing_ends_the_bridge(driver: socket.socket) -> None:
    bridge = VpcdBridge(StubCard(), port=driver.getsockname()[1])
    bridge.insert()
    conn, _ = driver.accept()
    conn.close()  # pcscd stopped
    bridge.remove()
    assert not bridge.inserted


def test_no_vpcd_listening_says_what_to_do() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connection refused
        with pytest.raises(VpcdError, match="pcscd"):
            VpcdBridge(StubCard(), port=port).insert()
