"""Where every state change of a charge is written: the journal first, then the tracker.

The runner (at the tap) and the invoice watcher (later) both settle charges; both do it
through one :class:`ChargeBook`, so the order — journal (fsync), claim record to the outbox,
event to whoever follows the charge — is written once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from station.claim.charge import FINAL_STATES, Charge
from station.claim.journal import ChargeJournal, JournalEntry

log = logging.getLogger("station.charge")

ClaimSink = Callable[[dict[str, Any]], None]
"""Where claim records go: the outbox (forwarded to ``POST /api/v1/claims`` exactly once)."""


def claim_body(
    charge: Charge, *, state: str | None = None, reason: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The record the tracker receives for every state change of a charge (one shape)."""
    stamp = (now or datetime.now(UTC).astimezone()).isoformat(timespec="milliseconds")
    return {
        "claim_id": charge.id,
        "tap_key": charge.tap_key,
        "state": state or charge.state,
        "amount_msat": charge.amount_msat,
        "memo": charge.memo or None,
        "bolt11": charge.bolt11,
        "payment_hash": charge.payment_hash,
        "issuer_host": charge.issuer_host,
        "k1_hash": charge.k1_hash,
        "reason": reason if reason is not None else charge.reason,
        "station_time": stamp,
    }


class ChargeBook:
    def __init__(self, journal: ChargeJournal, sink: ClaimSink) -> None:
        self.journal = journal
        self.sink = sink
        self._lock = threading.Lock()

    def begin(self, charge: Charge, entry: JournalEntry) -> None:
        """The claim is about to be sent: journal it (raises DuplicateClaim), then tell the
        tracker. Both are on disk before this returns."""
        self.journal.begin(entry)
        self.sink(claim_body(charge, state=entry.state))
        charge.set_state(entry.state)

    def settle(self, charge: Charge, state: str, reason: str | None) -> bool:
        """A later state of a claim that exists (claimed, pending, unknown, paid, …).

        The runner and the invoice watcher may both see a payment land: the first one records
        it, the second is told ``False``. A final state is never left, nor a state repeated.
        """
        with self._lock:
            if charge.final or charge.state == state:
                return False
            self.journal.update(charge.id, state, reason)
            self.sink(claim_body(charge, state=state, reason=reason))
            charge.set_state(state, reason)  # last: whoever waits on it sees it recorded
        if state in FINAL_STATES and _has_outcome(charge):
            log.info("charge settled", extra={"fields": {
                "charge": charge.id[:8], "state": state, "amount_sats": charge.amount_sats,
                "reason": reason,
            }})
        return True

    def known(self, charge_id: str) -> bool:
        return self.journal.get(charge_id) is not None


def _has_outcome(charge: Charge) -> bool:
    return any(event.kind == "outcome" for event in charge.events)
