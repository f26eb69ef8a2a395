"""A station daemon process for crash tests: an EmulatedReader on which a scheduler thread taps
one fake Bolt Card over and over. Prints ``ACK <idempotency key|refused> <outcome>`` after each
tap is acknowledged (spooled durably and given feedback), so the test knows what must survive.

usage: python daemon_proc.py OUTBOX TRACKER_URL TOKEN COUNTER_START [MAX_TAPS]
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared doubles

from station_fakes import FakeBoltCard

from station.app import build_station, run_station
from station.daemon import ReaderSlot, setup_logging
from station.readers.emulated import EmulatedReader
from station.settings import Secret, StationSettings, TrackerLink
from station.tap.result import TapResult
from station.tap.verifier import StaticKeysVerifier

UID = bytes.fromhex("04A1B2C3D4E5F6")
K1 = bytes(range(16))
K2 = bytes(range(16, 32))


def main() -> int:
    outbox, url, token, start = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    max_taps = int(sys.argv[5]) if len(sys.argv) > 5 else None
    setup_logging("json")
    settings = StationSettings(
        station_name="crashy", outbox_path=Path(outbox), debounce=0, confirm_timeout=0.2,
        tracker=TrackerLink(url=url, token=Secret(token)),
    )
    reader = EmulatedReader()
    card = FakeBoltCard(UID, K1, K2, counter=start)

    def acked(result: TapResult) -> None:
        key = f"{result.uid}:{result.counter}" if result.accepted else "refused"
        print(f"ACK {key} {result.outcome}", flush=True)

    station = build_station(
        settings, verifier=StaticKeysVerifier(K1, K2),
        slots=[ReaderSlot("emulated", open=lambda: reader)], max_taps=max_taps, on_tap=acked,
        backoff_max=0.2,
    )
    station.daemon.poll = 0.01

    def scheduler() -> None:
        while not station.daemon.stopping:
            reader.present(card)
            time.sleep(0.03)
            reader.remove()
            time.sleep(0.03)

    threading.Thread(target=scheduler, daemon=True).start()
    print("READY", flush=True)
    return run_station(station, flush_timeout=5)


if __name__ == "__main__":
    sys.exit(main())
