"""A tiny stand-in for the tracker's ingest API, on 127.0.0.1, for recorder tests that must not
depend on the real tracker being importable. It follows the published contract of
``POST /api/v1/taps`` and ``GET /api/v1/cards/{uid}/status`` (idempotency per station, counter
compare-and-set, blocked cards) and counts every request it sees."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeTracker:
    def __init__(self, tokens: dict[str, str] | None = None) -> None:
        self.tokens = tokens or {"tok-A": "A", "tok-B": "B"}
        self.taps: dict[str, dict[str, Any]] = {}  # idempotency key -> body + station
        self.cards: dict[str, dict[str, Any]] = {}
        self.posts = 0
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- server lifecycle -------------------------------------------------------------------------
    def start(self, port: int = 0) -> None:
        tracker = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _station(self) -> str | None:
                auth = self.headers.get("Authorization", "")
                return tracker.tokens.get(auth.removeprefix("Bearer "))

            def do_GET(self) -> None:
                station = self._station()
                if station is None:
                    return self._answer(401, {"detail": "bad token"})
                parts = self.path.strip("/").split("/")
                if len(parts) == 5 and parts[:3] == ["api", "v1", "cards"] and parts[4] == "status":
                    uid = parts[3].upper()
                    card = tracker.cards.get(uid)
                    if card is None:
                        return self._answer(200, {"uid": uid, "status": "unknown",
                                                  "last_counter": None})
                    return self._answer(200, {"uid": uid, **card})
                return self._answer(404, {"detail": "not found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                station = self._station()
                if station is None:
                    return self._answer(401, {"detail": "bad token"})
                if self.path == "/api/v1/taps/batch":  # each report as the single route
                    results = []
                    for report in body["taps"]:
                        code, answer = tracker.ingest(station, report)
                        results.append({"status": code, **answer})
                    return self._answer(200, {"results": results, "complete": True})
                code, answer = tracker.ingest(station, body)
                return self._answer(code, answer)

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- the contract -----------------------------------------------------------------------------
    def ingest(self, station: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.posts += 1
            key = body["idempotency_key"]
            if key in self.taps:
                if self.taps[key]["station"] == station:
                    return 200, {"tap": self.taps[key], "created": False}
                return 409, {"detail": {"reason": "counter_not_increasing", "last_counter": None}}
            uid = body["card_uid"].upper()
            card = self.cards.setdefault(uid, {"status": "active", "last_counter": None})
            if body["outcome"] == "accepted":
                if card["status"] == "blocked":
                    return 403, {"detail": {"reason": "card_blocked"}}
                last = card["last_counter"]
                if last is not None and body["counter"] <= last:
                    return 409, {"detail": {"reason": "counter_not_increasing",
                                            "last_counter": last}}
                card["last_counter"] = body["counter"]
            stored = {**body, "station": station}
            self.taps[key] = stored
            return 201, {"tap": stored, "created": True}


# -- a card that speaks just the NTAG 424 read path --------------------------------------------

import os  # noqa: E402

from station.ntag424 import crypto  # noqa: E402

NDEF_AID = bytes.fromhex("D2760000850101")


def sun_pc(k1: bytes, k2: bytes, uid: bytes, counter: int, pad: bytes) -> tuple[str, str]:
    """p and c the way NT4H2421Gx §9.3 / AN12196 §3 describe them, from crypto.py primitives
    (independent of station.ntag424.sun)."""
    ctr_le = counter.to_bytes(3, "little")
    p = crypto.aes_ecb_encrypt(k1, bytes([0xC7]) + uid + ctr_le + pad)
    ses = crypto.cmac(k2, bytes.fromhex("3CC300010080") + uid + ctr_le)
    c = crypto.cmac(ses, b"")[1::2]
    return p.hex().upper(), c.hex().upper()


def ndef_uri_file(url: str) -> bytes:
    """An NDEF file holding one well-known URI record (identifier code 00: no prefix)."""
    payload = b"\x00" + url.encode()
    record = bytes([0xD1, 0x01, len(payload)]) + b"U" + payload
    return len(record).to_bytes(2, "big") + record


class FakeBoltCard:
    """Answers SELECT / READ BINARY like a provisioned Bolt Card, ``FF CA`` like an ACR122U.

    Every selection of the NDEF application starts a read session that bumps the counter,
    unless ``frozen`` (then it keeps serving the same URL: a replay). ``foreign`` makes it a
    card without the NTAG 424 application; ``url`` overrides the NDEF content.
    """

    def __init__(
        self,
        uid: bytes,
        k1: bytes,
        k2: bytes,
        *,
        counter: int = 0,
        base: str = "lnurlw://pay.example.com/ln",
        frozen: bool = False,
        foreign: bool = False,
        url: str | None = None,
    ) -> None:
        self.uid, self.k1, self.k2 = uid, k1, k2
        self.counter = counter
        self.base = base
        self.frozen = frozen
        self.foreign = foreign
        self.fixed_url = url
        self.apdus: list[bytes] = []
        self.feedback: list[bytes] = []
        self._file = b""
        self._selected = False

    def current_url(self) -> str:
        if self.fixed_url is not None:
            return self.fixed_url
        p, c = sun_pc(self.k1, self.k2, self.uid, self.counter, os.urandom(5))
        return f"{self.base}?p={p}&c={c}"

    def transceive(self, apdu: bytes) -> bytes:
        self.apdus.append(apdu)
        if apdu[:2] == b"\xff\xca":
            return self.uid + b"\x90\x00"
        if apdu[:2] == b"\xff\x00":
            self.feedback.append(apdu)
            return b"\x90\x00"
        if self.foreign:
            return b"\x6a\x82"
        ins = apdu[1]
        if ins == 0xA4:
            data = apdu[5 : 5 + apdu[4]] if len(apdu) > 5 else b""
            if data == NDEF_AID:
                self._selected = True
                if not self.frozen:
                    self.counter += 1
                self._file = ndef_uri_file(self.current_url()) if self.fixed_url != "" else b"\0\0"
                self._file += bytes(256 - len(self._file))
            return b"\x90\x00"
        if ins == 0xB0:
            offset = int.from_bytes(apdu[2:4], "big")
            le = apdu[4] if len(apdu) >= 5 else 0
            le = le or 256
            return self._file[offset : offset + le] + b"\x90\x00"
        return b"\x6d\x00"

    def deselect(self) -> None:
        self._selected = False


class DyingLink:
    """A CardLink whose card leaves the field after ``after`` APDUs."""

    def __init__(self, card: FakeBoltCard, after: int) -> None:
        self.card = card
        self.after = after
        self.n = 0

    def transceive(self, apdu: bytes) -> bytes:
        from station.readers.base import CardRemoved

        self.n += 1
        if self.n > self.after:
            raise CardRemoved("gone")
        return self.card.transceive(apdu)

    def close(self) -> None:
        pass


class DirectLink:
    def __init__(self, card: FakeBoltCard) -> None:
        self.card = card

    def transceive(self, apdu: bytes) -> bytes:
        return self.card.transceive(apdu)

    def close(self) -> None:
        pass
