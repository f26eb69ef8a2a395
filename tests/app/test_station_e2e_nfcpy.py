"""End to end through stock nfcpy's udp radio with our ISO 14443-4 card: the daemon, opened
from settings like `station run` does, reads, verifies and records taps, refuses a rolled-back
counter, and records nothing for a card pulled mid-read or a foreign card."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
from station_fakes import foreign_card
from station_rig import RemovalWatch, wait_until

from station.app import build_station
from station.settings import KeySettings, ReaderSpec, Secret, StationSettings, TrackerLink
from station.tap.result import ACCEPTED, REFUSED, REPLAY

pytest.importorskip("nfc")

ISSUER = bytes.fromhex("00112233445566778899aabbccddeeff")
UID = bytes.fromhex("04E2E0000000B2")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_taps_through_nfcpy_udp(tmp_path: Path) -> None:
    from tracker_live import LiveTracker

    from station.cli.demo_run import load_or_provision
    from station.emulator.bridges.nfc_udp import NfcUdpCard
    from station.emulator.card import EmulatedCard

    tracker = LiveTracker(tmp_path)
    tracker.start()
    port = free_udp_port()
    card = load_or_provision(tmp_path / "card.json", UID, ISSUER, "lnurlw://pay.example.com/ln")
    saved = card.to_state()
    settings = StationSettings(
        station_name="till-nfc", readers=(ReaderSpec("nfcpy", f"udp:127.0.0.1:{port}"),),
        outbox_path=tmp_path / "outbox.sqlite", debounce=0.05,
        keys=KeySettings(issuer_key=Secret(ISSUER.hex())),
        tracker=TrackerLink(database_url=tracker.database_url),
    )
    station = build_station(settings, keep_results=True)  # readers opened via the registry
    removals = RemovalWatch()
    removals.watch_slot(station.daemon.slots[0])
    station.daemon.poll = 0.1
    station.forwarder.start()
    station.daemon.start()
    radio = NfcUdpCard(port=port)
    stats = station.daemon.stats

    def tap(c, what: str = "taps") -> None:  # type: ignore[no-untyped-def]
        before = getattr(stats, what)
        radio.insert(c)
        assert wait_until(lambda: getattr(stats, what) > before, 30), stats
        lift(removals.seen)

    def lift(seen: int) -> None:
        """Take the card away; wait until the daemon saw it go (``seen``: the count before the
        card came), not a fixed time."""
        radio.remove()
        assert removals.wait_for_more(seen, 30), "the daemon never saw the card leave"

    try:
        tap(card)
        tap(card)
        tap(EmulatedCard.from_state(saved))  # counter rolled back: a replay

        class PulledDuringRead:
            uid = UID

            def transceive(self, apdu: bytes) -> bytes:
                if apdu[1:2] == b"\xb0":
                    threading.Thread(target=radio.remove).start()
                    time.sleep(0.5)
                return card.transceive(apdu)

            def deselect(self) -> None:
                card.deselect()

        seen = removals.seen
        radio.insert(PulledDuringRead())
        assert wait_until(lambda: stats.removed_mid_read + stats.unsupported >= 1, 30), stats
        lift(seen)
        tap(foreign_card(), "unsupported")
        assert station.forwarder.flush(10)
    finally:
        radio.close()
        station.shutdown(flush_timeout=3)
    results = stats.results
    assert [(r.outcome, r.reason) for r in results] == [
        (ACCEPTED, None), (ACCEPTED, None), (REFUSED, REPLAY)]
    assert all(r.apdus == 3 for r in results)
    assert stats.removed_mid_read == 1
    rows = tracker.taps()
    tracker.close()
    assert [(t["outcome"], t["counter"]) for t in rows] == [(r.outcome, r.counter)
                                                           for r in results]
