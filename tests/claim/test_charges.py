"""The charge registry and the charge journal: arming, one charge per reader, expiry, cancel,
events in order, and the journal's one-claim-per-tap rule surviving a reopen."""

from __future__ import annotations

import stat
import threading
import time

import pytest

from station.claim import charge as states
from station.claim.charge import ChargeError, ChargeRegistry, ReaderBusy
from station.claim.journal import ChargeJournal, DuplicateClaim, JournalEntry


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_arm_take_and_one_charge_per_reader() -> None:
    reg = ChargeRegistry(clock=Clock())
    first = reg.arm(2100, "Coffee", reader="pcsc:A")
    with pytest.raises(ReaderBusy):
        reg.arm(100, reader="pcsc:A")
    other = reg.arm(100, reader="pcsc:B")  # another reader is free
    assert reg.take("pcsc:C") is None  # nothing armed there
    got = reg.take("pcsc:A")
    assert got is first and got.state == states.TAPPED
    assert reg.take("pcsc:A") is None  # the tap consumed it
    assert reg.take("pcsc:B") is other


def test_unassigned_charge_blocks_every_reader_and_any_reader_takes_it() -> None:
    reg = ChargeRegistry(clock=Clock())
    charge = reg.arm(500)
    with pytest.raises(ReaderBusy):
        reg.arm(500, reader="pcsc:A")
    assert reg.take("nfcpy:usb") is charge


@pytest.mark.parametrize(
    "amount", [0, -1, 1.5, "100", True, 21_000_000 * 100_000_000 + 1]
)
def test_bad_amounts_are_refused(amount: object) -> None:
    with pytest.raises(ChargeError, match="amount_sats"):
        ChargeRegistry().arm(amount)


@pytest.mark.parametrize("memo", ["x" * 201, "a\nb", "\x1b[31m", 5])
def test_bad_memos_are_refused(memo: object) -> None:
    with pytest.raises(ChargeError, match="memo"):
        ChargeRegistry().arm(100, memo)


def test_armed_charge_times_out_and_frees_the_reader() -> None:
    clock = Clock()
    finished: list[str] = []
    reg = ChargeRegistry(clock=clock, on_final=lambda c: finished.append(c.state))
    charge = reg.arm(100, reader="r", timeout=30)
    clock.now += 29.9
    assert reg.get(charge.id).state == states.ARMED
    clock.now += 0.2
    assert reg.take("r") is None
    assert charge.state == states.TIMEOUT and charge.reason == "no card was tapped in time"
    assert finished == [states.TIMEOUT]
    assert [e.kind for e in charge.events] == ["armed", "state", "outcome"]
    reg.arm(100, reader="r")  # free again


def test_a_charge_that_stops_waiting_leaves_no_timer_thread_behind() -> None:
    """A busy till arms hundreds of charges an hour; each used to keep a sleeping thread for
    its whole timeout after it was tapped, cancelled or refused."""
    reg = ChargeRegistry(default_timeout=600)
    before = threading.active_count()
    for _ in range(20):
        reg.arm(100, reader="r")
        assert reg.take("r") is not None
    reg.cancel(reg.arm(100, reader="r").id)
    reg.refuse(reg.arm(100, reader="r").id, "tap refused")
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before
    armed = reg.arm(100, reader="r", timeout=0.05)  # a charge still armed does time out
    deadline = time.monotonic() + 5
    while armed.state == states.ARMED and time.monotonic() < deadline:
        time.sleep(0.01)
    assert armed.state == states.TIMEOUT


def test_cancel_only_while_armed() -> None:
    reg = ChargeRegistry(clock=Clock())
    charge = reg.arm(100)
    reg.cancel(charge.id)
    assert charge.state == states.CANCELLED
    with pytest.raises(ChargeError, match="only an armed charge"):
        reg.cancel(charge.id)
    with pytest.raises(KeyError):
        reg.cancel("0" * 32)


def test_follow_streams_until_the_final_state_after_the_outcome() -> None:
    reg = ChargeRegistry(clock=Clock())
    charge = reg.arm(100)
    seen: list[str] = []

    def reader() -> None:
        for event in charge.follow(timeout=5, poll=0.05):
            if event is not None:
                seen.append(f"{event.kind}:{event.data.get('state', '')}")

    t = threading.Thread(target=reader)
    t.start()
    charge.set_state(states.CLAIMED)
    charge.emit("outcome", **charge.public())
    charge.set_state(states.PAID)  # the watcher settles it later
    t.join(5)
    assert not t.is_alive()
    assert seen == ["armed:armed", "state:claimed", "outcome:claimed", "state:paid"]


def test_pin_handover_is_one_shot() -> None:
    charge = ChargeRegistry().arm(100)
    charge.offer_pin("1234")
    assert charge.take_pin(0.1) == "1234"
    assert charge.take_pin(0.05) is None
    assert "1234" not in repr(charge)


def _entry(charge_id: str, tap_key: str) -> JournalEntry:
    return JournalEntry(
        id=charge_id, tap_key=tap_key, state="sending", amount_msat=2_100_000, memo="",
        issuer_host="pay.example", bolt11="lnbc1...", payment_hash="ab" * 32, invoice_id="i1",
        invoice_expires_at=2e9, k1_hash="cd" * 32, reason=None, uid="04A1B2C3D4E5F6",
        counter=7, card_id=None, verified=True, created_at=1.0,
    )


def test_journal_one_claim_per_tap_across_a_reopen(tmp_path) -> None:
    path = tmp_path / "charges.sqlite"
    journal = ChargeJournal(path)
    journal.begin(_entry("a" * 32, "04A1B2C3D4E5F6:7"))
    journal.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = ChargeJournal(path)
    with pytest.raises(DuplicateClaim):
        again.begin(_entry("b" * 32, "04A1B2C3D4E5F6:7"))
    assert [e.id for e in again.open_entries()] == ["a" * 32]
    again.update("a" * 32, "paid")
    assert again.open_entries() == []
    assert again.get("a" * 32).state == "paid"
    assert again.counts() == {"paid": 1}
