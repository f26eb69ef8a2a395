"""A merchant's charge end to end through the real PC/SC stack: the emulated Bolt Card behind
pcscd (vpcd bridge), ``station charge --backend pcsc`` as a real process, the demo issuer paying
through the demo wallet, and the real tracker receiving the tap and the claim over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from charge_world import REPO, STATION_NAME, assert_one_paid_claim
from station_rig import vpcd_reader_name
from tracker_live import LiveTracker

from station.emulator import store
from tests.charge_rig import UID, charge_rig

pytestmark = [pytest.mark.pcsc, pytest.mark.slow]


def test_a_tap_on_a_pcsc_reader_pays_the_merchant_and_reaches_the_tracker_once(
    tmp_path: Path, pcscd
) -> None:  # type: ignore[no-untyped-def]
    from station.emulator.bridges.vpcd import VpcdBridge

    tracker = LiveTracker(tmp_path)
    tracker.start()
    bridge = None
    try:
        token = tracker.add_station(STATION_NAME)
        with charge_rig(tmp_path) as rig:
            vpcd_reader_name()
            card, _ = store.load_or_create(rig.card_state, UID, save_new=False)
            bridge = VpcdBridge(card)
            bridge.insert(card)  # on the reader before the charge is armed: the next tap
            env = rig.station_env(STATION_TRACKER_URL=tracker.url, STATION_TRACKER_TOKEN=token)
            proc = subprocess.run(
                [sys.executable, "-m", "station", "charge", "2100", "--memo", "Coffee",
                 "--backend", "pcsc", "--reader", "Virtual PCD", "--timeout", "20", "--json"],
                capture_output=True, text=True, timeout=90, env=env, cwd=REPO,
            )
            assert proc.returncode == 0, proc.stderr
            out = json.loads(proc.stdout)
            assert out["state"] == "paid", out
            assert out["amount_msat"] == 2_100_000 and out["verified"] is True
            assert out["uid"] == UID.hex().upper()
            assert rig.merchant_balance_msat() == 2_100_000
            assert rig.callbacks == 1
            claim = assert_one_paid_claim(tracker, 2_100_000)
            assert claim["payment_hash"] == out["payment_hash"]
            assert claim["issuer_host"] == "127.0.0.1"
            assert "station charge:" not in proc.stderr  # nothing left spooled
    finally:
        if bridge is not None:
            bridge.close()
        tracker.close()
