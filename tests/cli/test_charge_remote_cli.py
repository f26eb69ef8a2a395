"""``station charge --station URL`` against a running station's POS endpoint: the command arms
the charge over HTTP and follows its event stream; the customer (this test) taps the card once
the charge is armed; the merchant's wallet balance is the proof."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.charge_rig import charge_rig
from tests.pos_station import PosStation, pos_station

TOKEN = "pos-token-for-the-cli-test"


def remote_charge(pos: PosStation, *args: str) -> tuple[int, dict[str, object], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "station", "charge", *args, "--station", pos.url, "--json",
         "--timeout", "20"],
        capture_output=True, text=True, timeout=90, env=pos.rig.station_env(),
        stdin=subprocess.DEVNULL,
    )
    out = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, out, proc.stderr


def test_charge_through_the_pos_endpoint_is_paid(tmp_path: Path) -> None:
    with charge_rig(tmp_path) as rig, pos_station(rig) as pos:
        customer = pos.tap_when_armed()
        code, out, err = remote_charge(pos, "700", "--memo", "Tea")
        customer.join(timeout=30)
        assert customer.failures == []  # type: ignore[attr-defined]
        assert code == 0, err
        assert out["state"] == "paid" and out["amount_msat"] == 700_000
        assert out["uid"] == "04C0FFEE000001" and out["verified"] is True
        assert len(str(out["payment_hash"])) == 64
        assert rig.merchant_balance_msat() == 700_000
        assert "p=" not in err and "k1=" not in err


def test_with_a_pos_token(tmp_path: Path) -> None:
    with charge_rig(tmp_path) as rig, pos_station(rig, STATION_POS_TOKEN=TOKEN) as pos:
        code, _, err = remote_charge(pos, "300", "--pos-token", "wrong-token")
        assert code == 4 and "token" in err
        assert pos.registry.armed() == []
        customer = pos.tap_when_armed()
        code, out, err = remote_charge(pos, "300", "--pos-token", TOKEN)
        customer.join(timeout=30)
        assert code == 0 and out["state"] == "paid", err
        assert rig.merchant_balance_msat() == 300_000
        assert TOKEN not in err


def test_nobody_taps_exits_3(tmp_path: Path) -> None:
    with charge_rig(tmp_path) as rig, pos_station(rig) as pos:
        proc = subprocess.run(
            [sys.executable, "-m", "station", "charge", "100", "--station", pos.url, "--json",
             "--timeout", "0.5"],
            capture_output=True, text=True, timeout=60, env=rig.station_env(),
        )
        assert proc.returncode == 3, proc.stderr
        assert json.loads(proc.stdout)["state"] == "timeout"
