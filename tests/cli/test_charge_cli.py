"""``station charge`` as a merchant runs it: a real process, the emulated card on the reader,
the demo issuer and the demo wallet on loopback — the merchant's wallet balance is the proof."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from station.outbox.outbox import Outbox
from tests.charge_rig import ChargeRig, charge_rig

TIMEOUT = 60


def charge(rig: ChargeRig, *args: str, **env: str) -> tuple[int, dict[str, object], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "station", "charge", *args, "--json", "--backend", "emulated",
         "--card-state", str(rig.card_state), "--timeout", "10"],
        capture_output=True, text=True, timeout=TIMEOUT, env=rig.station_env(**env),
    )
    out = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, out, proc.stderr


def claim_states(outbox: Path) -> list[str]:
    box = Outbox(outbox)
    try:
        return [e.record.state for e in box.entries("claim")]  # type: ignore[union-attr]
    finally:
        box.close()


def test_paid_and_the_merchant_wallet_holds_the_sats(tmp_path: Path) -> None:
    with charge_rig(tmp_path) as rig:
        code, out, err = charge(rig, "2100", "--memo", "Coffee")
        assert code == 0, err
        assert out["state"] == "paid"
        assert out["amount_msat"] == 2_100_000 and out["verified"] is True
        # counter 1 went to the read-back that proved the card when it was provisioned
        assert out["uid"] == "04C0FFEE000001" and out["counter"] == 2
        assert out["issuer_host"] == "127.0.0.1" and len(str(out["payment_hash"])) == 64
        assert rig.merchant_balance_msat() == 2_100_000
        assert claim_states(rig.outbox) == ["sending", "claimed", "paid"]
        assert "p=" not in err and "k1=" not in err


def test_second_charge_is_refused_when_the_pull_payment_is_spent(tmp_path: Path) -> None:
    with charge_rig(tmp_path, balance_msat=3_000_000) as rig:
        assert charge(rig, "2000")[0] == 0
        code, out, _ = charge(rig, "2000")
        assert code == 1 and out["state"] == "refused"
        assert "range" in str(out["reason"])  # the issuer's max is now 1,000 sats
        assert rig.merchant_balance_msat() == 2_000_000


def test_a_replayed_card_never_reaches_the_issuer(tmp_path: Path) -> None:
    with charge_rig(tmp_path) as rig:
        before = tmp_path / "before.json"
        shutil.copy(rig.card_state, before)
        assert charge(rig, "1000")[0] == 0
        shutil.copy(before, rig.card_state)  # the card's counter goes back: a replay
        calls = rig.issuer.stats()["boltcard_requests"] if hasattr(rig.issuer, "stats") else None
        code, out, _ = charge(rig, "1000")
        assert code == 1 and out["state"] == "refused"
        assert out["reason"] == "tap refused: counter_not_increasing"
        if calls is not None:
            assert rig.issuer.stats()["boltcard_requests"] == calls
        assert rig.merchant_balance_msat() == 1_000_000


def test_the_issuer_not_answering_the_claim_is_settled_from_the_invoice(tmp_path: Path) -> None:
    with charge_rig(tmp_path, drop_callback=True) as rig:
        code, out, err = charge(rig, "1500")
        assert out["state"] == "paid", err
        assert code == 0
        assert claim_states(rig.outbox) == ["sending", "unknown", "paid"]


def test_an_issuer_host_not_allowed_is_never_contacted(tmp_path: Path) -> None:
    with charge_rig(tmp_path) as rig:
        code, out, _ = charge(rig, "1000", STATION_ALLOWED_HOSTS="pay.example.com")
        assert code == 1 and out["state"] == "refused"
        assert out["reason"] == "tap refused: host_not_allowed"
        assert rig.merchant_balance_msat() == 0


def test_no_card_within_the_timeout_exits_3(tmp_path: Path) -> None:
    with charge_rig(tmp_path) as rig:
        proc = subprocess.run(
            [sys.executable, "-m", "station", "charge", "100", "--json", "--backend",
             "emulated", "--timeout", "0.5"],
            capture_output=True, text=True, timeout=TIMEOUT, env=rig.station_env(),
        )
        assert proc.returncode == 3, proc.stderr
        assert json.loads(proc.stdout)["state"] == "timeout"


def test_bad_input_exits_2_in_one_line(tmp_path: Path) -> None:
    with charge_rig(tmp_path) as rig:
        for args in (["0"], ["100", "--memo", "x" * 300], ["100", "--timeout", "-1"]):
            proc = subprocess.run([sys.executable, "-m", "station", "charge", *args],
                                  capture_output=True, text=True, timeout=TIMEOUT,
                                  env=rig.station_env())
            assert proc.returncode == 2, (args, proc.stderr)
            assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
        env = rig.station_env()
        env.pop("STATION_ISSUER_KEY")
        proc = subprocess.run([sys.executable, "-m", "station", "charge", "100", "--backend",
                               "emulated"], capture_output=True, text=True, timeout=TIMEOUT,
                              env=env)
        assert proc.returncode == 2 and "accept_foreign_cards" in proc.stderr


def test_a_foreign_card_is_charged_unverified_only_when_allowed(tmp_path: Path) -> None:
    with charge_rig(tmp_path) as rig:
        other_key = "11" * 16  # the station holds keys, but not this card's
        code, out, _ = charge(rig, "1000", STATION_ISSUER_KEY=other_key)
        assert code == 1 and out["reason"] == "tap refused: unknown_card"
        assert rig.merchant_balance_msat() == 0  # nobody was contacted, nothing claimed
        code, out, err = charge(rig, "1000", STATION_ISSUER_KEY=other_key,
                                STATION_ACCEPT_FOREIGN_CARDS="1")
        assert code == 0, err
        assert out["state"] == "paid" and out["verified"] is False
        assert out["uid"] == "04C0FFEE000001" and out["counter"] is None  # the reader's UID
        assert rig.merchant_balance_msat() == 1_000_000
        box = Outbox(rig.outbox)
        try:
            taps = [e.record for e in box.entries("tap")]
        finally:
            box.close()
        assert [(t.outcome, t.verified) for t in taps] == [
            ("refused", True), ("accepted", False)]
        assert taps[1].idempotency_key.startswith("till-test:")


def test_a_station_without_any_keys_charges_foreign_cards_when_allowed(tmp_path: Path) -> None:
    with charge_rig(tmp_path) as rig:
        env = rig.station_env(STATION_ACCEPT_FOREIGN_CARDS="1")
        env.pop("STATION_ISSUER_KEY")
        proc = subprocess.run(
            [sys.executable, "-m", "station", "charge", "500", "--json", "--backend",
             "emulated", "--card-state", str(rig.card_state), "--timeout", "10"],
            capture_output=True, text=True, timeout=TIMEOUT, env=env,
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["verified"] is False
