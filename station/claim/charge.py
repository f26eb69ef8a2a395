"""A charge: the merchant's amount, armed on a reader, claimed by the next valid tap.

Life of one charge (states in capitals are final)::

    armed ──tap──► tapped ──withdrawRequest + invoice──► sending ──callback──► claimed ──► PAID
      │                │                                    │             └─► pending ──► PAID
      │                └──► REFUSED (issuer said ERROR,      │                      └───► EXPIRED
      │                     host not allowed, amount out     └──► unknown (sent, no answer)
      │                     of range, wrong PIN ×3, …)               └── invoice lookup ──► PAID
      ├──► CANCELLED (the merchant cancelled it)                                         EXPIRED
      └──► TIMEOUT (nobody tapped in time)

``claimed``, ``pending`` and ``unknown`` are not final: the merchant's own invoice is the truth,
and the invoice watcher settles them as ``paid`` or ``expired``. The states the merchant sees
(``station charge`` output, POS page) are these names; the tracker receives every change.

Why the events: the POS page follows one charge over server-sent events, and ``station charge
--station URL`` prints its outcome from the same stream, so a charge keeps an append-only list
of :class:`ChargeEvent` and a condition to wait on. Nothing here does I/O.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

ARMED = "armed"
TAPPED = "tapped"
SENDING = "sending"
CLAIMED = "claimed"
PENDING = "pending"
UNKNOWN = "unknown"
PAID = "paid"
REFUSED = "refused"
EXPIRED = "expired"
CANCELLED = "cancelled"
TIMEOUT = "timeout"

FINAL_STATES = frozenset({PAID, REFUSED, EXPIRED, CANCELLED, TIMEOUT})
# Claimed, pending and unknown wait for the merchant's invoice to be paid (or expire).
AWAITING_PAYMENT = frozenset({SENDING, CLAIMED, PENDING, UNKNOWN})

MAX_AMOUNT_SATS = 21_000_000 * 100_000_000
MAX_MEMO = 200


class ChargeError(Exception):
    """A charge cannot be armed or changed as asked; the message says why and what to do."""


class ReaderBusy(ChargeError):
    """A charge is already armed on that reader."""


def check_amount_sats(amount: object) -> int:
    """The armed amount: a whole number of sats, 1 .. 21 million BTC."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ChargeError("amount_sats must be a whole number of sats")
    if not 1 <= amount <= MAX_AMOUNT_SATS:
        raise ChargeError(f"amount_sats must be between 1 and {MAX_AMOUNT_SATS}")
    return amount


def check_memo(memo: object) -> str:
    if memo is None:
        return ""
    if not isinstance(memo, str):
        raise ChargeError("memo must be text")
    if len(memo) > MAX_MEMO:
        raise ChargeError(f"memo must be at most {MAX_MEMO} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in memo):
        raise ChargeError("memo must not contain control characters")
    return memo


@dataclass(frozen=True)
class ChargeEvent:
    """One step of a charge, as the POS page and ``station charge --station`` see it."""

    seq: int
    kind: str  # armed | tapped | invoice | pin_required | callback | state | outcome
    at: float  # unix time
    data: dict[str, Any]


@dataclass
class Charge:
    """One armed charge and everything that happened to it. Secrets are never stored here:
    no PIN, no preimage, no full p/c (``k1`` appears only as a hash)."""

    id: str
    amount_sats: int
    memo: str
    reader: str | None
    expires_at: float  # unix time the armed charge stops waiting for a tap
    created_at: float
    state: str = ARMED
    uid: str | None = None
    counter: int | None = None
    card_id: str | None = None
    verified: bool | None = None
    tap_key: str | None = None
    issuer_host: str | None = None
    payment_hash: str | None = None
    bolt11: str | None = field(default=None, repr=False)
    invoice_id: str | None = None
    invoice_expires_at: float | None = None
    k1_hash: str | None = None
    reason: str | None = None
    fault: str | None = None  # refused by: issuer | station | environment (invoice source)
    started: float | None = None  # perf_counter at the tap
    ms: float | None = None
    pin_attempts: int = 0
    events: list[ChargeEvent] = field(default_factory=list, repr=False)
    _cond: threading.Condition = field(default_factory=threading.Condition, repr=False)
    _pin: str | None = field(default=None, repr=False)

    @property
    def amount_msat(self) -> int:
        return self.amount_sats * 1000

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def emit(self, kind: str, **data: Any) -> ChargeEvent:
        with self._cond:
            event = ChargeEvent(len(self.events), kind, time.time(), data)
            self.events.append(event)
            self._cond.notify_all()
        return event

    def set_state(self, state: str, reason: str | None = None) -> None:
        with self._cond:
            self.state = state
            if reason is not None:
                self.reason = reason
        self.emit("state", state=state, reason=self.reason)

    def events_since(self, seq: int, timeout: float) -> list[ChargeEvent]:
        """Events numbered ``seq`` and later; waits up to ``timeout`` s for one to arrive."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.events) <= seq:
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self._cond.wait(left)
            return self.events[seq:]

    def follow(self, timeout: float, poll: float = 15.0) -> Iterator[ChargeEvent | None]:
        """Every event from the first, then new ones as they come, until the charge's
        ``outcome`` was seen and its state is final (a claimed charge goes on until the
        invoice is paid or expires), or ``timeout`` passes. ``None`` marks a quiet ``poll``
        period (a server-sent-events keep-alive)."""
        deadline = time.monotonic() + timeout
        seq = 0
        seen_outcome = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            got = self.events_since(seq, min(poll, left))
            if not got:
                yield None
                continue
            for event in got:
                yield event
                seen_outcome = seen_outcome or event.kind == "outcome"
            seq = got[-1].seq + 1
            if seen_outcome and self.final and len(self.events) <= seq:
                return

    def wait_final(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self.final:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    # -- the PIN: handed from the POS page (or a prompt) to the runner, never stored -----------

    def offer_pin(self, pin: str) -> None:
        with self._cond:
            self._pin = pin
            self._cond.notify_all()

    def take_pin(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pin is None and not self.final:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            pin, self._pin = self._pin, None
            return pin

    def public(self) -> dict[str, Any]:
        """The one shape of a charge for the POS API, its events and ``station charge``."""
        return {
            "id": self.id,
            "state": self.state,
            "amount_sats": self.amount_sats,
            "amount_msat": self.amount_msat,
            "memo": self.memo,
            "reader": self.reader,
            "payment_hash": self.payment_hash,
            "uid": self.uid,
            "counter": self.counter,
            "card_id": self.card_id,
            "verified": self.verified,
            "issuer_host": self.issuer_host,
            "reason": self.reason,
            "ms": None if self.ms is None else round(self.ms, 1),
            "expires_at": self.expires_at,
        }


class ChargeRegistry:
    """The armed charges of one station: at most one per reader; the next valid tap claims it.

    ``reader=None`` arms on whichever reader sees the next tap (a station with one reader).
    Finished charges stay visible for ``keep`` entries so the POS page can still show them.
    """

    def __init__(
        self,
        *,
        default_timeout: float = 60.0,
        keep: int = 200,
        clock: Callable[[], float] = time.time,
        on_final: Callable[[Charge], None] | None = None,
    ) -> None:
        self.default_timeout = default_timeout
        self.keep = keep
        self._clock = clock
        self._on_final = on_final
        self._lock = threading.Lock()
        self._charges: dict[str, Charge] = {}
        # One expiry timer per armed charge, cancelled when it stops being armed: otherwise
        # each charge leaves a sleeping thread behind for its whole timeout.
        self._timers: dict[str, threading.Timer] = {}

    def arm(
        self,
        amount_sats: object,
        memo: object = "",
        *,
        reader: str | None = None,
        timeout: float | None = None,
    ) -> Charge:
        amount = check_amount_sats(amount_sats)
        text = check_memo(memo)
        wait = self.default_timeout if timeout is None else float(timeout)
        if not 0 < wait <= 3600:
            raise ChargeError("timeout must be between 0 and 3600 seconds")
        now = self._clock()
        with self._lock:
            self._expire_locked(now)
            for other in self._charges.values():
                if other.state == ARMED and (reader is None or other.reader in (None, reader)):
                    raise ReaderBusy(
                        f"a charge ({other.id[:8]}) is already armed on "
                        f"{other.reader or 'this station'}: cancel it or wait for its tap"
                    )
            charge = Charge(
                id=uuid.uuid4().hex, amount_sats=amount, memo=text, reader=reader,
                expires_at=now + wait, created_at=now,
            )
            self._charges[charge.id] = charge
            self._trim_locked()
            # Nobody may look at the registry while the charge waits: time it out on the dot.
            timer = threading.Timer(wait + 0.01, self.expire)
            timer.daemon = True
            self._timers[charge.id] = timer
        charge.emit("armed", **charge.public())
        timer.start()
        return charge

    def take(self, reader: str) -> Charge | None:
        """The charge armed for ``reader`` (or for any reader), now ``tapped``; else None."""
        now = self._clock()
        with self._lock:
            self._expire_locked(now)
            found = next(
                (c for c in self._charges.values()
                 if c.state == ARMED and c.reader in (None, reader)),
                None,
            )
            if found is None:
                return None
            found.state = TAPPED
            found.started = time.perf_counter()
            self._drop_timer_locked(found.id)
        return found

    def get(self, charge_id: str) -> Charge | None:
        with self._lock:
            self._expire_locked(self._clock())
            return self._charges.get(charge_id)

    def cancel(self, charge_id: str) -> Charge:
        with self._lock:
            charge = self._charges.get(charge_id)
            if charge is None:
                raise KeyError(charge_id)
            if charge.state != ARMED:
                raise ChargeError(
                    f"charge is {charge.state}: only an armed charge can be cancelled"
                )
            charge.state = CANCELLED
            self._drop_timer_locked(charge_id)
        self._finish(charge, CANCELLED, "cancelled by the merchant")
        return charge

    def refuse(self, charge_id: str, reason: str) -> Charge | None:
        """End a charge still armed as refused (its one tap was refused before any claim)."""
        with self._lock:
            charge = self._charges.get(charge_id)
            if charge is None or charge.state != ARMED:
                return None
            charge.state = REFUSED
            self._drop_timer_locked(charge_id)
        charge.fault = "station"
        self._finish(charge, REFUSED, reason)
        return charge

    def armed(self) -> list[Charge]:
        with self._lock:
            self._expire_locked(self._clock())
            return [c for c in self._charges.values() if c.state == ARMED]

    def expire(self) -> None:
        """Time out armed charges whose wait is over (also done lazily on every call)."""
        with self._lock:
            self._expire_locked(self._clock())

    def _expire_locked(self, now: float) -> None:
        for charge in self._charges.values():
            if charge.state == ARMED and now >= charge.expires_at:
                charge.state = TIMEOUT
                self._drop_timer_locked(charge.id)
                # Outside the registry's lock would be nicer; emit only takes the charge's own.
                self._finish(charge, TIMEOUT, "no card was tapped in time")

    def _drop_timer_locked(self, charge_id: str) -> None:
        timer = self._timers.pop(charge_id, None)
        if timer is not None:
            timer.cancel()  # also before start(): the thread then ends at once

    def _finish(self, charge: Charge, state: str, reason: str) -> None:
        charge.set_state(state, reason)
        charge.emit("outcome", **charge.public())
        if self._on_final is not None:
            self._on_final(charge)

    def _trim_locked(self) -> None:
        if len(self._charges) <= self.keep:
            return
        for charge_id in [c.id for c in self._charges.values() if c.final]:
            if len(self._charges) <= self.keep:
                break
            del self._charges[charge_id]
