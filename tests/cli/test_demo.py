"""``station demo --taps N`` runs the whole product: taps reach the tracker, charges are paid
through the demo issuer into the demo wallet and show up as Completed payouts, and a restart
keeps the login and the cards."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_demo(state: Path, taps: int) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "station", "demo", "--dir", str(state), "--taps", str(taps),
         "--interval", "0.1", "--port", "0", "--issuer-port", "0", "--pos-port", "0"],
        cwd=REPO, capture_output=True, text=True, timeout=180,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def login_of(out: str) -> str:
    found = re.search(r"login: operator / (\S+)\)", out)
    assert found, out
    return found.group(1)


def test_demo_records_taps_and_paid_charges(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    first = run_demo(state, 8)
    assert "http://127.0.0.1:" in first.stdout and "POS page: http://127.0.0.1:" in first.stdout
    with sqlite3.connect(state / "tracker.sqlite") as db:
        taps = db.execute("SELECT outcome FROM tap").fetchall()
        stations = db.execute("SELECT name FROM station").fetchall()
        payouts = db.execute("SELECT state, amount_msat FROM payout").fetchall()
        claims = db.execute("SELECT state FROM claim").fetchall()
        # The tracker follows the demo issuer (BTCPay's payouts API): every payout is the
        # issuer's own record, reached through its signed webhooks.
        linked = db.execute("SELECT COUNT(*) FROM payout WHERE issuer_payout_id IS NOT NULL "
                            "AND tap_pk IS NOT NULL").fetchone()[0]
        deliveries = db.execute("SELECT COUNT(*) FROM webhook_delivery").fetchone()[0]
    assert len(taps) == 8 and ("accepted",) in taps
    assert stations == [("demo-station",)]
    # Most genuine taps had a charge armed: each was paid and is a Completed payout.
    assert payouts and all(state == "Completed" and amount > 0 for state, amount in payouts)
    assert set(claims) == {("paid",)} and len(claims) == len(payouts)
    assert linked == len(payouts) and deliveries >= len(payouts)
    # Three emulated cards keep their state (and counters) for the next run.
    assert len(list((state / "cards").glob("*.json"))) == 3
    assert stat.S_IMODE((state / "login").stat().st_mode) == 0o600
    # The demo issuer key never shows up in the output.
    assert "de30de30" not in (first.stdout + first.stderr).lower()

    second = run_demo(state, 2)
    assert login_of(second.stdout) == login_of(first.stdout)  # the same login after a restart
    with sqlite3.connect(state / "tracker.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM tap").fetchone()[0] == 10
