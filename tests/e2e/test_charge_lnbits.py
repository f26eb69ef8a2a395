"""A charge with the real LNbits (from PyPI, FakeWallet, offline) as the merchant's invoice
source, and the demo issuer paying from a second LNbits wallet through LNbits' own API — as an
issuer running on LNbits would. LNbits' own payment record is the proof that it was paid."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from charge_world import REPO
from peers.lnbits import LnbitsPeer
from peers.lnbits import lnbits_peer as lnbits_peer  # the session fixture (REQUIRE_LNBITS=1)

from station.demo.payer import LnbitsPayer
from tests.charge_rig import charge_rig

pytestmark = pytest.mark.slow


def test_the_merchant_invoice_at_lnbits_is_paid_by_the_issuer_through_lnbits(
    tmp_path: Path, lnbits_peer: LnbitsPeer
) -> None:
    peer = lnbits_peer
    merchant_before = peer.balance_msat(peer.merchant)
    payer = LnbitsPayer(peer.base_url, peer.payer.admin_key)
    with charge_rig(tmp_path, payer=payer) as rig:
        env = rig.station_env(STATION_INVOICE_SOURCE="lnbits", STATION_INVOICE_URL=peer.base_url,
                              STATION_INVOICE_KEY=peer.merchant.invoice_key)
        proc = subprocess.run(
            [sys.executable, "-m", "station", "charge", "2100", "--memo", "Tea", "--json",
             "--backend", "emulated", "--card-state", str(rig.card_state), "--timeout", "10"],
            capture_output=True, text=True, timeout=90, env=env, cwd=REPO,
        )
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        assert out["state"] == "paid", out
        assert rig.callbacks == 1
        assert rig.merchant_balance_msat() == 0  # the demo wallet was not involved
    payment_hash = str(out["payment_hash"])
    with peer.client() as http:
        got = http.get(f"/api/v1/payments/{payment_hash}",
                       headers={"X-Api-Key": peer.merchant.invoice_key})
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["paid"] is True
    preimage = bytes.fromhex(body["preimage"])
    assert hashlib.sha256(preimage).hexdigest() == payment_hash
    assert peer.balance_msat(peer.merchant) - merchant_before == 2_100_000
