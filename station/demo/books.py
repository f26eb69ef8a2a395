"""The demo issuer's books: pull payments, cards and payouts, in memory. A TEST PEER.

Everything that must not race lives in :meth:`Ledger.claim`: the card's counter check and
advance, the PIN check, the duplicate-invoice check, the balance check and the creation of the
payout happen under one lock, so twenty concurrent callbacks for one tap give exactly one
payout. The HTTP layer (``issuer.py``) only parses and renders.

Shapes follow BTCPay Server (see firmware_notes/btcpay-boltcard.md): a pull payment's
remaining balance is its limit minus completed and in-flight payouts; a payout's destination
is the BOLT11 text and its dedup key the payment hash; the proof is the PascalCase
``PayoutLightningBlob``.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from station.ntag424 import keys as keymod
from station.ntag424 import sun
from station.ntag424.errors import InvalidTap, MalformedInput, UsageError

__all__ = [
    "AWAITING_PAYMENT",
    "CANCELLED",
    "COMPLETED",
    "IN_FLIGHT",
    "Card",
    "ClaimRefused",
    "Ledger",
    "Payout",
    "PullPayment",
    "TapRefused",
    "VerifiedTap",
]

AWAITING_APPROVAL: Final = "AwaitingApproval"
AWAITING_PAYMENT: Final = "AwaitingPayment"
IN_PROGRESS: Final = "InProgress"
COMPLETED: Final = "Completed"
CANCELLED: Final = "Cancelled"
IN_FLIGHT: Final = frozenset({AWAITING_APPROVAL, AWAITING_PAYMENT, IN_PROGRESS})
MAX_PIN_TRIES: Final = 3

REPLAYED: Final = "Replayed or expired query"
INVALID_PICC: Final = "Invalid PICCData"
DISABLED: Final = "This card is disabled (3 wrong PINs)"


class TapRefused(Exception):
    """A tap the issuer will not serve; ``reason`` is what the LNURL client is told."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class ClaimRefused(TapRefused):
    """A callback refused after the tap was verified."""


@dataclass(slots=True)
class PullPayment:
    """A pull payment with a limit in msat; cards linked to it spend from it."""

    id: str
    name: str
    amount_msat: int
    store_id: str = "demo-store"
    currency: str = "SATS"
    description: str = ""
    auto_approve_claims: bool = True
    archived: bool = False
    created: int = field(default_factory=lambda: int(time.time()))

    def to_api(self) -> dict[str, Any]:
        """Greenfield ``PullPaymentData`` (the fields a client reads)."""
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "currency": self.currency,
            "amount": _sats_text(self.amount_msat),
            "period": None,
            "BOLT11Expiration": 30,
            "autoApproveClaims": self.auto_approve_claims,
            "archived": self.archived,
            "startsAt": self.created,
            "expiresAt": None,
            "payoutMethods": ["BTC-LN"],
        }


@dataclass(slots=True, repr=False)
class Card:
    """A card linked to a pull payment, with its keys and its last accepted counter."""

    uid: bytes
    pull_payment_id: str
    keys: keymod.KeySet
    counter: int = 0
    pin: str | None = None
    pin_limit_msat: int = 1000
    pin_failures: int = 0
    enabled: bool = True

    def __repr__(self) -> str:
        return f"Card(uid={self.uid.hex()}, pp={self.pull_payment_id!r}, counter={self.counter})"

    @property
    def disabled_reason(self) -> str | None:
        return None if self.enabled else DISABLED


@dataclass(slots=True, repr=False)
class Payout:
    """One payout, shaped like BTCPay's ``PayoutData`` (Greenfield v2)."""

    id: str
    pull_payment_id: str
    store_id: str
    destination: str
    payment_hash: str
    amount_msat: int
    state: str = AWAITING_PAYMENT
    revision: int = 0
    date: int = field(default_factory=lambda: int(time.time()))
    preimage: str | None = None
    card_uid: bytes = b""

    def __repr__(self) -> str:
        return f"Payout({self.id}, {self.state}, rev={self.revision}, {self.amount_msat} msat)"

    def to_api(self) -> dict[str, Any]:
        """The Greenfield v2 payout body (field names of ``GreenfieldPullPaymentController``)."""
        proof: dict[str, Any] | None = None
        if self.state == COMPLETED:
            proof = {
                "ProofType": "PayoutLightningBlob",
                "PaymentHash": self.payment_hash,
                "Preimage": self.preimage,
                "Id": self.payment_hash,
                "Link": None,
            }
        return {
            "id": self.id,
            "revision": self.revision,
            "pullPaymentId": self.pull_payment_id,
            "date": self.date,
            "destination": self.destination,
            "originalCurrency": "SATS",
            "originalAmount": _sats_text(self.amount_msat),
            "payoutCurrency": "BTC",
            "payoutAmount": _btc_text(self.amount_msat),
            "payoutMethodId": "BTC-LN",
            "state": self.state,
            "metadata": {},
            "paymentProof": proof,
        }


@dataclass(frozen=True, slots=True)
class VerifiedTap:
    """A tap whose SUN MAC checked out, with the card and pull payment it belongs to."""

    uid: bytes
    counter: int
    card: Card
    pull_payment: PullPayment


def _decimal_text(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


def _sats_text(msat: int) -> str:
    return _decimal_text(Decimal(msat) / 1000)


def _btc_text(msat: int) -> str:
    return _decimal_text(Decimal(msat) / 100_000_000_000)


def new_id(nbytes: int = 15) -> str:
    """A BTCPay-looking random id (base58-ish letters and digits)."""
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    return "".join(secrets.choice(alphabet) for _ in range(int(nbytes * 1.4)))


Listener = Callable[[str, Payout], None]
"""Called with (event type, payout) under the lock after every payout change."""


class Ledger:
    """In-memory pull payments, cards and payouts, with one lock for every change.

    A ``threading.Lock`` rather than an asyncio one: the critical section never awaits, and
    the test code may touch the ledger from another thread than the server's event loop.
    """

    def __init__(
        self,
        *,
        store_id: str = "demo-store",
        issuer_key: bytes | None = None,
        first_key_version: int = keymod.DEFAULT_VERSION,
        min_withdrawable_msat: int = 1000,
    ) -> None:
        self.store_id = store_id
        self._issuer_key = issuer_key
        self._first_version = first_key_version
        self.min_withdrawable_msat = min_withdrawable_msat
        self._lock = threading.Lock()
        self._pull_payments: dict[str, PullPayment] = {}
        self._cards: dict[bytes, Card] = {}
        self._payouts: dict[str, Payout] = {}
        self._by_hash: dict[str, str] = {}
        self._store: keymod.KeyStore | None = None
        self._listeners: list[Listener] = []

    # -- setup ---------------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def add_pull_payment(self, pp: PullPayment) -> PullPayment:
        if pp.amount_msat <= 0:
            raise ValueError("a pull payment needs a positive amount")
        with self._lock:
            if pp.id in self._pull_payments:
                raise ValueError(f"pull payment {pp.id!r} exists already")
            self._pull_payments[pp.id] = pp
        return pp

    def pull_payment(self, pp_id: str) -> PullPayment | None:
        return self._pull_payments.get(pp_id)

    def pull_payments(self) -> list[PullPayment]:
        return list(self._pull_payments.values())

    def add_card(
        self,
        uid: bytes,
        pull_payment_id: str,
        *,
        keys: keymod.KeySet | None = None,
        pin: str | None = None,
        pin_limit_msat: int = 1000,
        counter: int = 0,
    ) -> Card:
        """Link a card with its own keys (``keys``) or keys derived from the issuer key."""
        if pull_payment_id not in self._pull_payments:
            raise ValueError(f"unknown pull payment {pull_payment_id!r}")
        if keys is None:
            if self._issuer_key is None:
                raise ValueError("a card without keys needs the issuer key")
            keys = keymod.derive_keys(self._issuer_key, uid, self._first_version)
        if pin is not None and not (pin.isdigit() and 4 <= len(pin) <= 8):
            raise ValueError("a PIN is 4 to 8 digits")
        card = Card(uid, pull_payment_id, keys, counter, pin, pin_limit_msat)
        with self._lock:
            self._cards[uid] = card
            self._store = None
        return card

    def register_card(self, pull_payment_id: str, uid: bytes, on_existing: str) -> Card:
        """``POST /api/v1/pull-payments/{id}/boltcards``: deterministic keys for ``uid``.

        ``KeepVersion`` returns the keys the card already has (or links a new card at the first
        version); ``UpdateVersion`` bumps the version (a re-programmed card: new keys, counter
        from zero).
        """
        if self._issuer_key is None:
            raise ValueError("this demo issuer has no issuer key; cards need their own keys")
        if pull_payment_id not in self._pull_payments:
            raise LookupError(pull_payment_id)
        with self._lock:
            old = self._cards.get(uid)
            if old is not None and on_existing != "UpdateVersion":
                old.pull_payment_id = pull_payment_id
                return old
            version = self._first_version if old is None else old.keys.version + 1
            try:
                derived = keymod.derive_keys(self._issuer_key, uid, version)
            except UsageError as exc:
                raise ValueError(str(exc)) from None
            card = Card(uid, pull_payment_id, derived)
            if old is not None:
                card.pin, card.pin_limit_msat = old.pin, old.pin_limit_msat
            self._cards[uid] = card
            self._store = None
            return card

    def card(self, uid: bytes) -> Card | None:
        return self._cards.get(uid)

    # -- taps ----------------------------------------------------------------------------------

    def _key_store(self) -> keymod.KeyStore | None:
        store = self._store
        if store is None and self._cards:
            entries = [keymod.CardEntry(uid=c.uid, keys=c.keys) for c in self._cards.values()]
            store = self._store = keymod.KeyStore(entries)
        return store

    def verify(self, p_hex: str, c_hex: str) -> VerifiedTap:
        """Check the SUN MAC with the core and find the card; the counter is checked, not moved.

        Refusals carry BTCPay's words: ``Invalid PICCData`` when no key of ours decrypts ``p``
        to a card we know, ``Replayed or expired query`` for a bad MAC or an old counter.
        """
        try:
            params = sun.parse_sun_url(f"/boltcard?p={p_hex}&c={c_hex}")
        except MalformedInput:
            raise TapRefused(INVALID_PICC) from None
        with self._lock:
            store = self._key_store()
        if store is None:
            raise TapRefused(INVALID_PICC)
        try:
            match = store.verify(params)
        except keymod.UnknownCard:
            raise TapRefused(INVALID_PICC) from None
        except (InvalidTap, MalformedInput):
            raise TapRefused(REPLAYED) from None
        card = self._cards.get(match.uid)
        pp = self._pull_payments.get(card.pull_payment_id) if card else None
        if card is None or pp is None or pp.archived:
            raise TapRefused(REPLAYED)
        if match.counter <= card.counter:
            raise TapRefused(REPLAYED)
        if not card.enabled:
            raise TapRefused(DISABLED)
        return VerifiedTap(match.uid, match.counter, card, pp)

    def remaining_msat(self, pp: PullPayment) -> int:
        spent = sum(
            p.amount_msat
            for p in self._payouts.values()
            if p.pull_payment_id == pp.id and (p.state == COMPLETED or p.state in IN_FLIGHT)
        )
        return max(0, pp.amount_msat - spent)

    def claim(
        self,
        tap: VerifiedTap,
        *,
        bolt11: str,
        payment_hash: str,
        amount_msat: int,
        pin: str | None,
    ) -> Payout:
        """Spend one tap: check the PIN, advance the counter, dedup and balance, make the payout.

        A wrong PIN leaves the tap unspent, so the point of sale may ask again on the same link;
        three wrong PINs disable the card (the Bolt Card withdraw-pin rule: "invalidate the link
        after 3 failed PINs"; BTCPay itself has no PIN). Otherwise the counter moves first (as
        BTCPay's ``updateCounter: pr is not null`` does), so a tap whose claim is then refused
        is used up, and a concurrent duplicate sees it as replayed.
        """
        with self._lock:
            card = self._cards.get(tap.uid)
            if card is None or card is not tap.card or tap.counter <= card.counter:
                raise ClaimRefused(REPLAYED)
            if not card.enabled:
                raise ClaimRefused(DISABLED)
            if card.pin is not None and amount_msat >= card.pin_limit_msat:
                if pin is None:
                    raise ClaimRefused("A PIN is required for this amount")
                if not hmac.compare_digest(pin.encode(), card.pin.encode()):
                    card.pin_failures += 1
                    if card.pin_failures >= MAX_PIN_TRIES:
                        card.enabled = False
                        raise ClaimRefused(DISABLED)
                    left = MAX_PIN_TRIES - card.pin_failures
                    raise ClaimRefused(f"Wrong PIN ({left} tries left)")
                card.pin_failures = 0
            card.counter = tap.counter
            if payment_hash in self._by_hash:
                raise ClaimRefused("Payment request could not be paid (Claim result: Duplicate)")
            pp = self._pull_payments[card.pull_payment_id]
            remaining = self.remaining_msat(pp)
            if amount_msat > remaining:
                raise ClaimRefused("Payment request could not be paid (Claim result: Overdraft)")
            payout = Payout(
                id=new_id(),
                pull_payment_id=pp.id,
                store_id=pp.store_id,
                destination=bolt11,
                payment_hash=payment_hash,
                amount_msat=amount_msat,
                card_uid=card.uid,
            )
            self._payouts[payout.id] = payout
            self._by_hash[payment_hash] = payout.id
            self._emit("PayoutCreated", payout)
            self._emit("PayoutApproved", payout)
            return payout

    def settle(self, payout_id: str, *, ok: bool, preimage: str | None = None) -> Payout:
        """AwaitingPayment → Completed (with proof) or Cancelled; the revision goes up."""
        with self._lock:
            payout = self._payouts[payout_id]
            if payout.state not in IN_FLIGHT:
                return payout
            payout.state = COMPLETED if ok else CANCELLED
            payout.preimage = preimage if ok else None
            payout.revision += 1
            self._emit("PayoutUpdated", payout)
            return payout

    def _emit(self, event: str, payout: Payout) -> None:
        for listener in self._listeners:
            listener(event, payout)

    # -- payouts -------------------------------------------------------------------------------

    def payout(self, payout_id: str) -> Payout | None:
        return self._payouts.get(payout_id)

    def payouts(
        self,
        *,
        store_id: str | None = None,
        pull_payment_id: str | None = None,
        include_cancelled: bool = False,
    ) -> list[Payout]:
        """Payouts newest first; cancelled ones only when asked (as Greenfield does)."""
        with self._lock:
            found: Iterable[Payout] = list(self._payouts.values())
        out = [
            p
            for p in found
            if (store_id is None or p.store_id == store_id)
            and (pull_payment_id is None or p.pull_payment_id == pull_payment_id)
            and (include_cancelled or p.state != CANCELLED)
        ]
        return sorted(out, key=lambda p: p.date, reverse=True)
