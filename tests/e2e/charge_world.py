"""What the end-to-end charge tests read back from the real tracker and start as processes.

The tracker's own database is the witness for "exactly once": one tap row, one claim row, one
history row per claim state, one payout, in the state the claims service maps the claim to.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from station_rig import wait_until
from tracker_live import LiveTracker

REPO = Path(__file__).resolve().parents[2]
STATION_NAME = "till-test"  # the name charge_rig's environment gives the station


def claims(tracker: LiveTracker) -> list[dict[str, Any]]:
    """Every claim the tracker stores, with its tap's key and its payout's state."""
    with tracker.engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT c.id, c.claim_id, c.state, c.amount_msat, c.payment_hash, c.issuer_host, "
            "c.reason, t.idempotency_key AS tap_key, p.state AS payout_state, "
            "p.amount_msat AS payout_msat "
            "FROM claim c JOIN tap t ON t.id = c.tap_pk LEFT JOIN payout p ON p.id = c.payout_pk "
            "ORDER BY c.id"
        )).mappings().all()
    return [dict(r) for r in rows]


def claim_history(tracker: LiveTracker) -> list[tuple[str | None, str]]:
    """Every stored claim state change, in order: (from, to)."""
    with tracker.engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT from_state, to_state FROM claim_state_change ORDER BY id")).all()
    return [(r[0], r[1]) for r in rows]


def payouts(tracker: LiveTracker) -> list[dict[str, Any]]:
    with tracker.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, state, amount_msat FROM payout ORDER BY id"))
        return [dict(r) for r in rows.mappings().all()]


def assert_one_paid_claim(tracker: LiveTracker, amount_msat: int) -> dict[str, Any]:
    """The tracker holds the tap and the claim once, every claim state once, payout Completed."""
    taps = tracker.taps()
    assert len(taps) == 1, taps
    assert taps[0]["outcome"] == "accepted" and taps[0]["station"] == STATION_NAME
    stored = claims(tracker)
    assert len(stored) == 1, stored
    claim = stored[0]
    assert claim["state"] == "paid" and claim["amount_msat"] == amount_msat
    assert claim["tap_key"] == taps[0]["idempotency_key"]
    assert claim["payout_state"] == "Completed" and claim["payout_msat"] == amount_msat
    assert len(payouts(tracker)) == 1
    history = claim_history(tracker)
    targets = [to for _, to in history]
    assert len(targets) == len(set(targets)), f"a claim state arrived twice: {history}"
    assert targets[0] == "sending" and targets[-1] == "paid", history
    return claim


class StationRun:
    """``station run`` as a real process, its log in a file (JSON lines) for the tests to read."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self._file = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "station", "run"], cwd=REPO, env=env,
            stdout=self._file, stderr=subprocess.STDOUT,
        )

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def wait_for_event(self, event: str, timeout: float = 30.0) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        def seen() -> bool:
            assert self.proc.poll() is None, f"station run exited:\n{self.log.read_text()}"
            found[:] = [e for e in self.events() if e.get("event") == event]
            return bool(found)

        assert wait_until(seen, timeout, step=0.05), f"no {event}:\n{self.log.read_text()}"
        return found[-1]

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._file.close()

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        self._file.close()
        return code


def wait_for(cond: Any, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class InProcessStation:
    """The station built by the composition root from ``STATION_*`` settings, on an emulated
    reader, running in this process: the tests reach inside (client timeout, forwarder)."""

    def __init__(self, env: dict[str, str]) -> None:
        from station.app import build_station
        from station.daemon import ReaderSlot
        from station.readers.emulated import EmulatedReader
        from station.settings import load_settings

        self.reader = EmulatedReader()
        settings = load_settings(env=env)
        self.station = build_station(
            settings, slots=[ReaderSlot("emulated", open=lambda: self.reader)], poll=0.02,
            backoff_max=0.2,
        )
        assert self.station.charging is not None
        self.charging = self.station.charging
        self._thread: threading.Thread | None = None

    def start(self) -> InProcessStation:
        self.station.forwarder.start()
        self.charging.start()
        self._thread = threading.Thread(target=self.station.daemon.run, daemon=True)
        self._thread.start()
        return self

    def charge(self, card: Any, amount_sats: int, timeout: float = 30.0) -> Any:
        """Arm ``amount_sats``, present ``card``, wait for the outcome, take the card away."""
        charge = self.charging.registry.arm(amount_sats, "e2e", timeout=timeout)
        self.reader.present(card)
        try:
            for event in charge.follow(timeout):
                if event is not None and event.kind == "outcome":
                    break
        finally:
            self.reader.remove()
        return charge

    def close(self) -> int:
        self.station.daemon.stop()
        if self._thread is not None:
            self._thread.join(10)
        return self.station.shutdown(flush_timeout=3.0)
