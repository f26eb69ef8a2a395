"""End to end through the real pcscd + vpcd with the emulated NTAG 424 DNA: the daemon reads,
verifies and records taps, refuses a rolled-back counter, survives a card pulled mid-read, a
foreign card and a pcscd restart."""

from __future__ import annotations

from pathlib import Path

import pytest
from station_fakes import foreign_card
from station_rig import RemovalWatch, vpcd_reader_name, wait_until

from station.app import build_station
from station.daemon import ReaderSlot
from station.settings import KeySettings, Secret, StationSettings, TrackerLink
from station.tap.result import ACCEPTED, REFUSED, REPLAY
from station.tap.verifier import build_verifier

ISSUER = bytes.fromhex("00112233445566778899aabbccddeeff")
UID = bytes.fromhex("04E2E0000000A1")

pytestmark = pytest.mark.pcsc


@pytest.fixture
def rig(tmp_path: Path, pcscd):  # type: ignore[no-untyped-def]
    from tracker_live import LiveTracker

    from station.cli.demo_run import load_or_provision
    from station.emulator.bridges.vpcd import VpcdBridge
    from station.readers.pcsc import PcscReader

    tracker = LiveTracker(tmp_path)
    tracker.start()
    token = tracker.add_station("till-pcsc")
    card = load_or_provision(tmp_path / "card.json", UID, ISSUER, "lnurlw://pay.example.com/ln")
    name = vpcd_reader_name()
    settings = StationSettings(
        station_name="till-pcsc", outbox_path=tmp_path / "outbox.sqlite", debounce=0.05,
        keys=KeySettings(issuer_key=Secret(ISSUER.hex())),
        tracker=TrackerLink(url=tracker.url, token=Secret(token)),
    )
    removals = RemovalWatch()
    station = build_station(
        settings, verifier=build_verifier(settings.keys),
        slots=[ReaderSlot("pcsc:vpcd", open=lambda: removals.wrap(PcscReader(name)))],
        keep_results=True,
    )
    station.daemon.retry_initial = 0.1
    station.daemon.retry_max = 0.5
    bridge = VpcdBridge(card)
    station.forwarder.start()
    station.daemon.start()
    station.removals = removals  # type: ignore[attr-defined]
    yield station, bridge, card, tracker, pcscd
    bridge.close()
    station.shutdown(flush_timeout=3)
    tracker.close()


def tap(station, bridge, card, *, what: str = "taps") -> None:  # type: ignore[no-untyped-def]
    """Present ``card`` until the daemon counts it, take it away until the daemon saw it go."""
    stats = station.daemon.stats
    before = getattr(stats, what)
    bridge.insert(card)
    assert wait_until(lambda: getattr(stats, what) > before), f"no {what} seen"
    removals_before = station.removals.seen
    bridge.remove()
    # pcscd notices a removal 80-280 ms later on an idle machine; wait for the daemon to see it.
    assert station.removals.wait_for_more(removals_before), "the daemon never saw the removal"


def test_tap_is_read_verified_recorded_and_a_rollback_refused(rig) -> None:  # type: ignore[no-untyped-def]
    from station.emulator.card import EmulatedCard

    station, bridge, card, tracker, _ = rig
    saved = card.to_state()
    tap(station, bridge, card)
    tap(station, bridge, card)
    # The same card with its counter rolled back (a cloned chip state): a replay.
    rolled_back = EmulatedCard.from_state(saved)
    tap(station, bridge, rolled_back)
    assert station.forwarder.flush(10)
    results = station.daemon.stats.results
    assert [(r.outcome, r.reason) for r in results] == [
        (ACCEPTED, None), (ACCEPTED, None), (REFUSED, REPLAY)]
    assert all(r.apdus == 3 for r in results)
    assert results[2].counter == results[0].counter
    rows = tracker.taps()
    assert [(t["outcome"], t["counter"]) for t in rows] == [
        (r.outcome, r.counter) for r in results]
    assert {t["uid"] for t in rows} == {UID.hex().upper()}


def test_card_pulled_mid_read_and_foreign_card_record_nothing(rig) -> None:  # type: ignore[no-untyped-def]
    station, bridge, card, tracker, _ = rig

    class PulledDuringRead:
        def transceive(self, apdu: bytes) -> bytes:
            if apdu[1:2] == b"\xb0":  # READ BINARY: the card leaves before answering
                bridge.remove()  # from the bridge's own thread: the link is cut, no join
            return card.transceive(apdu)

        def power_cycle(self) -> None:
            card.power_cycle()

    removals_before = station.removals.seen
    bridge.insert(PulledDuringRead())
    assert wait_until(lambda: station.daemon.stats.removed_mid_read == 1), station.daemon.stats
    assert station.removals.wait_for_more(removals_before)
    tap(station, bridge, foreign_card(), what="unsupported")
    tap(station, bridge, card)  # the daemon is still fine
    assert station.forwarder.flush(10)
    assert [t["outcome"] for t in tracker.taps()] == [ACCEPTED]


def test_pcscd_restarted_under_a_running_daemon(rig) -> None:  # type: ignore[no-untyped-def]
    station, bridge, card, tracker, pcscd = rig
    tap(station, bridge, card)
    pcscd.restart()
    vpcd_reader_name()
    assert wait_until(lambda: station.daemon.slots[0].down_since is None, 20)
    tap(station, bridge, card)
    assert station.forwarder.flush(10)
    assert [t["outcome"] for t in tracker.taps()] == [ACCEPTED, ACCEPTED]
