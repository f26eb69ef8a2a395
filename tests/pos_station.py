"""A whole station in this process, serving its POS endpoint on loopback, for the POS page and
``station charge --station`` tests: the charge rig's wallet and issuer, the daemon on an
emulated reader, the charge flow and the POS app exactly as ``station run`` composes them.

The test plays the customer: :meth:`PosStation.tap_when_armed` waits for a charge to be armed,
then lays the provisioned emulated card on the reader and takes it off again once the charge
has moved on.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from station.app import Station, build_station, serve_pos
from station.claim.charge import Charge, ChargeRegistry
from station.daemon import ReaderSlot
from station.emulator import store
from station.readers.emulated import EmulatedReader
from station.settings import load_settings
from tests.charge_rig import ChargeRig
from tests.station_rig import wait_until

READER = "emulated:*"


@dataclass
class PosStation:
    url: str
    station: Station
    reader: EmulatedReader
    rig: ChargeRig

    @property
    def registry(self) -> ChargeRegistry:
        assert self.station.charging is not None
        return self.station.charging.registry

    def armed(self, timeout: float = 30.0) -> Charge:
        """The charge the page (or the CLI) armed; fails the test if none comes."""
        assert wait_until(lambda: bool(self.registry.armed()), timeout), "no charge was armed"
        return self.registry.armed()[0]

    def tap(self, charge: Charge, timeout: float = 30.0) -> None:
        """Lay the card on the reader until the daemon took the charge, then take it off."""
        card = store.load(self.rig.card_state)
        self.reader.present(card)
        try:
            assert wait_until(lambda: charge.state != "armed", timeout), "the tap was not taken"
        finally:
            self.reader.remove()
        # The card's counter moved: keep it for the next tap of the same test.
        store.save(self.rig.card_state, card)

    def tap_when_armed(self, timeout: float = 30.0) -> threading.Thread:
        """In the background: wait for an armed charge, then tap the card (the CLI test)."""
        failures: list[BaseException] = []

        def customer() -> None:
            try:
                self.tap(self.armed(timeout), timeout)
            except BaseException as exc:  # reported by the test through .failures
                failures.append(exc)

        thread = threading.Thread(target=customer, name="customer", daemon=True)
        thread.failures = failures  # type: ignore[attr-defined]
        thread.start()
        return thread


@contextmanager
def pos_station(rig: ChargeRig, **env: str) -> Iterator[PosStation]:
    """The station built from the rig's STATION_* settings (plus ``env``), POS on a free port."""
    settings = load_settings(env=rig.station_env(STATION_POS_LISTEN="127.0.0.1:0", **env))
    reader = EmulatedReader()
    station = build_station(settings, slots=[ReaderSlot(READER, open=lambda: reader)], poll=0.05)
    assert station.charging is not None
    station.forwarder.start()
    station.charging.start()
    daemon = threading.Thread(target=station.daemon.run, name="daemon", daemon=True)
    daemon.start()
    pos = serve_pos(station)
    try:
        yield PosStation(pos.url, station, reader, rig)
    finally:
        pos.stop()
        station.daemon.stop()
        daemon.join(timeout=10)
        station.shutdown(flush_timeout=0)
