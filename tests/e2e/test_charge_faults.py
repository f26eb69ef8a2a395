"""Charges when something around the station breaks: the issuer down or talking nonsense, the
claim's answer lost, the tracker away while a charge completes, the station killed mid-claim.
Each test says what the merchant sees, and checks what the peers saw: no invoice made for a
claim that cannot happen, the callback never sent twice, every record in the tracker once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from charge_world import (
    REPO,
    STATION_NAME,
    InProcessStation,
    StationRun,
    assert_one_paid_claim,
    claim_history,
    claims,
    wait_for,
)
from tracker_live import LiveTracker

from station.emulator import store
from station.outbox.outbox import Outbox
from tests.charge_rig import UID, ChargeRig, charge_rig

pytestmark = pytest.mark.slow


def station_charge(rig: ChargeRig, amount: str, **env: str) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "station", "charge", amount, "--json", "--backend", "emulated",
         "--card-state", str(rig.card_state), "--timeout", "10"],
        capture_output=True, text=True, timeout=90, env=rig.station_env(**env), cwd=REPO,
    )
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else {}, proc.stderr


def claim_records(outbox: Path) -> list[str]:
    box = Outbox(outbox)
    try:
        return [e.record.state for e in box.entries("claim")]  # type: ignore[union-attr]
    finally:
        box.close()


@pytest.fixture
def tracker(tmp_path: Path):  # type: ignore[no-untyped-def]
    live = LiveTracker(tmp_path)
    yield live  # not started: each test decides when the tracker is up
    live.close()


def test_issuer_down_is_refused_with_a_reason_and_no_invoice_is_made(tmp_path: Path) -> None:
    with charge_rig(tmp_path) as rig:
        rig.stop_issuer()  # nothing listens on the card's LNURLW host:port any more
        code, out, err = station_charge(rig, "1000")
        assert code == 1, err
        assert out["state"] == "refused"
        assert "no answer from '127.0.0.1'" in out["reason"]
        assert "nothing was claimed" in out["reason"]
        assert out["payment_hash"] is None
        assert rig.invoices_made == 0 and claim_records(rig.outbox) == []
        assert rig.merchant_balance_msat() == 0


def test_issuer_answering_garbage_is_refused_before_any_invoice(tmp_path: Path) -> None:
    with charge_rig(tmp_path, garbage=True) as rig:
        code, out, err = station_charge(rig, "1000")
        assert code == 1, err
        assert out["state"] == "refused" and out["reason"]
        assert rig.invoices_made == 0 and rig.callbacks == 0
        assert claim_records(rig.outbox) == []


def test_callback_timeout_is_unknown_then_paid_from_the_invoice_sent_once(
    tmp_path: Path,
) -> None:
    with charge_rig(tmp_path, slow_callback_s=6.0) as rig:
        station = InProcessStation(rig.station_env())
        # The issuer pays, then sits on its answer for 6 s; the station gives up after 2 s
        # (the client's per-request deadline, 30 s in production; 2 s leaves the first GET
        # room on a loaded machine).
        station.charging.runner.withdraw.timeout = 2.0  # type: ignore[attr-defined]
        station.start()
        try:
            card = store.load(rig.card_state)
            charge = station.charge(card, 1500)
        finally:
            station.close()
        assert charge.state == "paid", charge.public()
        assert "did not answer the claim" in str(
            [e.data.get("reason") for e in charge.events if e.kind == "state"])
        assert [e.kind for e in charge.events].count("callback") == 1
        assert rig.callbacks == 1 and rig.invoices_made == 1
        assert claim_records(rig.outbox) == ["sending", "unknown", "paid"]
        assert rig.merchant_balance_msat() == 1_500_000


def test_tracker_down_while_a_charge_completes_loses_and_doubles_nothing(
    tmp_path: Path, tracker: LiveTracker,
) -> None:
    token = tracker.add_station(STATION_NAME)
    with charge_rig(tmp_path) as rig:
        env = rig.station_env(STATION_TRACKER_URL=tracker.url, STATION_TRACKER_TOKEN=token,
                              STATION_CONFIRM_TIMEOUT="0.3")
        station = InProcessStation(env).start()
        try:
            charge = station.charge(store.load(rig.card_state), 2100)
            assert charge.state == "paid", charge.public()
            assert station.station.outbox.pending_count() == 4  # the tap + three claim states
            tracker.start()
            assert station.station.forwarder.flush(20), "the outbox did not drain"
        finally:
            left = station.close()
        assert left == 0
        assert_one_paid_claim(tracker, 2_100_000)
        assert [to for _, to in claim_history(tracker)] == ["sending", "claimed", "paid"]
        assert rig.callbacks == 1


@pytest.mark.pcsc
def test_sigkill_while_the_claim_is_in_flight_settles_from_the_invoice_after_restart(
    tmp_path: Path, tracker: LiveTracker, pcscd,
) -> None:  # type: ignore[no-untyped-def]
    from station_rig import vpcd_reader_name

    from station.emulator.bridges.vpcd import VpcdBridge

    tracker.start()
    token = tracker.add_station(STATION_NAME)
    with charge_rig(tmp_path, slow_callback_s=5.0) as rig:
        vpcd_reader_name()
        env = rig.station_env(
            STATION_READERS="pcsc:Virtual PCD", STATION_POS_LISTEN="127.0.0.1:0",
            STATION_LOG_FORMAT="json", STATION_TRACKER_URL=tracker.url,
            STATION_TRACKER_TOKEN=token, STATION_DEBOUNCE="0.05",
        )
        card, _ = store.load_or_create(rig.card_state, UID, save_new=False)
        bridge = VpcdBridge(card)
        first = second = None
        try:
            first = StationRun(env, tmp_path / "run1.log")
            pos = first.wait_for_event("pos_listening")["url"]
            armed = httpx.post(f"{pos}/charges", json={"amount_sats": 2100}, trust_env=False)
            assert armed.status_code == 201, armed.text
            bridge.insert(card)
            wait_for(lambda: rig.callbacks == 1, 30, "the claim callback at the issuer")
            first.kill()  # the issuer is still holding its answer: the station never hears it
            bridge.remove()
            assert "sending" in claim_records(rig.outbox)

            second = StationRun(env, tmp_path / "run2.log")
            wait_for(lambda: [c["state"] for c in claims(tracker)] == ["paid"], 60,
                     "the claim to be settled paid at the tracker")
            assert second.stop() == 0
        finally:
            for run in (first, second):
                if run is not None and run.proc.poll() is None:
                    run.stop()
            bridge.close()
        assert rig.callbacks == 1, "the callback was sent again after the restart"
        assert rig.merchant_balance_msat() == 2_100_000
        assert claim_records(rig.outbox)[-1] == "paid"
        assert_one_paid_claim(tracker, 2_100_000)
