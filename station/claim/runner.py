"""Running one charge: from an accepted tap to the merchant's invoice being paid.

The order of the steps is the safety argument, so here it is once::

    1. GET the card's URL (allow-listed host)      → withdrawRequest   (nothing spent yet)
    2. check the armed amount against [min, max]    → refused before any invoice exists
    3. PIN, when the issuer's pinLimit asks for one → refused after three wrong PINs
    4. a fresh invoice from the merchant's source  → decoded and checked by the source
    5. journal (fsync) + claim record to the outbox, state "sending"
    6. the callback with k1 + pr (+ pin), once      → claimed | pending | refused | unknown
    7. the merchant's invoice, polled               → paid | expired

Step 5 before step 6 means a crash can lose an answer but never cause a second callback: on
restart the journal says "sending", the charge becomes ``unknown`` and the watcher settles it
from the invoice (``watch.py``). Nothing here logs a PIN, ``k1``, a preimage or the card's p/c.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from station.claim import charge as states
from station.claim.book import ChargeBook
from station.claim.charge import Charge
from station.claim.errors import (
    ClaimError,
    ClaimRefused,
    IssuerUnreachable,
    OutcomeUnknown,
    WrongPin,
)
from station.claim.journal import DuplicateClaim, JournalEntry
from station.claim.watch import InvoiceWatcher
from station.claim.withdraw import CallbackResult, WithdrawRequest, check_amount, needs_pin
from station.invoices.base import Invoice, InvoiceSource, InvoiceSourceError

log = logging.getLogger("station.charge")

PIN_TRIES = 3


@dataclass(frozen=True)
class TappedCard:
    """What the charge needs to know about the tap that claims it. ``url`` holds p/c."""

    url: str = field(repr=False)
    tap_key: str
    uid: str | None
    counter: int | None
    card_id: str | None
    verified: bool
    host: str | None


class WithdrawClient(Protocol):
    """The LNURL-withdraw client (``station.claim.client.LnurlWithdrawClient``)."""

    def fetch(self, card_url: str) -> WithdrawRequest: ...

    def claim(
        self, req: WithdrawRequest, bolt11: str, *, amount_msat: int, pin: str | None = None
    ) -> CallbackResult: ...


class PinPrompt(Protocol):
    """Asks the customer for the card's PIN; ``None`` when nobody can be asked."""

    def __call__(self, charge: Charge, attempt: int) -> str | None: ...


def no_pin(charge: Charge, attempt: int) -> str | None:
    return None


class ChargeRunner:
    """Runs charges; one instance per station, safe to call from several reader threads."""

    def __init__(
        self,
        *,
        withdraw: WithdrawClient,
        invoices: InvoiceSource | None,
        book: ChargeBook,
        watcher: InvoiceWatcher,
        pin_prompt: PinPrompt = no_pin,
        invoice_expiry: int = 600,
        settle_wait: float = 5.0,
        settle_poll: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.withdraw = withdraw
        self.invoices = invoices
        self.book = book
        self.watcher = watcher
        self.pin_prompt = pin_prompt
        self.invoice_expiry = invoice_expiry
        self.settle_wait = settle_wait
        self.settle_poll = settle_poll
        self._sleep = sleep

    # -- the steps ---------------------------------------------------------------------------

    def run(self, charge: Charge, card: TappedCard) -> Charge:
        """Claim ``charge`` with ``card``'s tap; returns when the merchant has an outcome."""
        if charge.started is None:
            charge.started = time.perf_counter()
        charge.uid, charge.counter, charge.card_id = card.uid, card.counter, card.card_id
        charge.verified, charge.tap_key, charge.issuer_host = card.verified, card.tap_key, card.host
        charge.emit("tapped", uid=card.uid, counter=card.counter, verified=card.verified,
                    issuer_host=card.host)
        try:
            self._claim(charge, card)
        except ClaimRefused as exc:
            self._refuse(charge, exc.reason, fault="issuer")
        except WrongPin as exc:
            self._refuse(charge, exc.reason, fault="issuer")
        except IssuerUnreachable as exc:
            self._refuse(charge, str(exc), fault="issuer")
        except OutcomeUnknown:
            self._settle(charge, states.UNKNOWN,
                         "the issuer did not answer the claim; watching the invoice")
            self._await_payment(charge, _invoice_of(charge))
        except InvoiceSourceError as exc:
            self._refuse(charge, str(exc), fault="environment")
        except ClaimError as exc:  # host not allowed, bad withdrawRequest, amount, PIN missing
            self._refuse(charge, str(exc), fault="station")
        except DuplicateClaim:
            self._refuse(charge, "this tap was already claimed; tap the card again",
                         fault="station")
        except Exception:
            log.exception("charge %s failed unexpectedly", charge.id[:8])
            if charge.state in (states.SENDING,):
                self._settle(charge, states.UNKNOWN, "station error after sending the claim")
            else:
                self._refuse(charge, "station error before the claim was sent",
                             fault="station")
        self._finish(charge)
        return charge

    def _claim(self, charge: Charge, card: TappedCard) -> None:
        request = self.withdraw.fetch(card.url)
        check_amount(request, charge.amount_msat)
        pin = self._first_pin(charge, request)
        if self.invoices is None:
            raise InvoiceSourceError(
                "no invoice source configured: set [invoices] source/url/key "
                "(STATION_INVOICE_SOURCE, STATION_INVOICE_URL, STATION_INVOICE_KEY)"
            )
        invoice = self.invoices.create(charge.amount_msat, charge.memo, self.invoice_expiry)
        if invoice.amount_msat != charge.amount_msat:
            raise InvoiceSourceError("the invoice source made an invoice for another amount")
        charge.bolt11, charge.payment_hash, charge.invoice_id = (
            invoice.bolt11, invoice.payment_hash, invoice.id,
        )
        charge.invoice_expires_at = invoice.expires_at.timestamp()
        charge.k1_hash = request.k1_hash
        charge.emit("invoice", payment_hash=invoice.payment_hash, bolt11=invoice.bolt11,
                    amount_msat=invoice.amount_msat)
        self.book.begin(charge, JournalEntry(
            id=charge.id, tap_key=card.tap_key, state=states.SENDING,
            amount_msat=charge.amount_msat, memo=charge.memo, issuer_host=card.host,
            bolt11=invoice.bolt11, payment_hash=invoice.payment_hash, invoice_id=invoice.id,
            invoice_expires_at=charge.invoice_expires_at, k1_hash=charge.k1_hash, reason=None,
            uid=card.uid, counter=card.counter, card_id=card.card_id, verified=card.verified,
            created_at=time.time(),
        ))
        tries = 1
        while True:
            charge.emit("callback", attempt=tries)
            try:
                answer = self.withdraw.claim(request, invoice.bolt11,
                                             amount_msat=charge.amount_msat, pin=pin)
                break
            except WrongPin as exc:
                if tries >= PIN_TRIES:
                    raise WrongPin(f"wrong PIN {PIN_TRIES} times: {exc.reason}") from None
                charge.emit("pin_wrong", attempt=tries, reason=exc.reason)
                pin = self._ask_pin(charge, tries + 1)
                tries += 1
        if answer.status == "pending":
            self._settle(charge, states.PENDING, answer.reason)
        else:
            self._settle(charge, states.CLAIMED, answer.reason)
        self._await_payment(charge, invoice)

    def _first_pin(self, charge: Charge, request: WithdrawRequest) -> str | None:
        if not needs_pin(request, charge.amount_msat):
            return None
        return self._ask_pin(charge, 1)

    def _ask_pin(self, charge: Charge, attempt: int) -> str:
        charge.pin_attempts = attempt
        charge.emit("pin_required", attempt=attempt, tries=PIN_TRIES)
        pin = self.pin_prompt(charge, attempt)
        if not pin:
            raise _PinMissing()
        return pin

    def _await_payment(self, charge: Charge, invoice: Invoice) -> None:
        """Poll the merchant's invoice for a few seconds (most issuers pay within that);
        after that the watcher goes on in the background."""
        assert self.invoices is not None
        deadline = time.monotonic() + self.settle_wait
        while time.monotonic() < deadline:
            try:
                status = self.invoices.lookup(invoice)
            except InvoiceSourceError:
                status = None
            if status is not None and status.state == "paid":
                self._settle(charge, states.PAID, None)
                return
            if status is not None and status.state == "expired":
                self._settle(charge, states.EXPIRED, "the invoice expired unpaid")
                return
            self._sleep(self.settle_poll)
        self.watcher.watch(charge, invoice)

    # -- after a restart ---------------------------------------------------------------------

    def recover(self) -> list[Charge]:
        """Hand every charge the journal left open to the watcher; the issuer is not called.

        A charge still ``sending`` crashed between the claim record and the callback's answer:
        the callback may have gone out, so it becomes ``unknown`` and only the merchant's
        invoice can settle it.
        """
        recovered = []
        for entry in self.book.journal.open_entries():
            charge = charge_from_entry(entry)
            if entry.state == states.SENDING:
                self._settle(charge, states.UNKNOWN,
                             "the station restarted while claiming; watching the invoice")
            else:
                self.watcher.watch(charge, _invoice_of(charge))
            recovered.append(charge)
        if recovered:
            log.info("watching %d unsettled charges from before the restart", len(recovered))
        return recovered

    # -- recording ---------------------------------------------------------------------------

    def _settle(self, charge: Charge, state: str, reason: str | None) -> None:
        """A state change after the claim exists: journal, tracker, page — in that order."""
        self.book.settle(charge, state, reason)
        if state == states.UNKNOWN and charge.bolt11 is not None:
            self.watcher.watch(charge, _invoice_of(charge))

    def _refuse(self, charge: Charge, reason: str, *, fault: str) -> None:
        charge.fault = fault
        if charge.state == states.SENDING or self.book.known(charge.id):
            self._settle(charge, states.REFUSED, reason)
        else:
            charge.set_state(states.REFUSED, reason)

    def _finish(self, charge: Charge) -> None:
        if charge.started is not None:
            charge.ms = (time.perf_counter() - charge.started) * 1000.0
        charge.emit("outcome", **charge.public())
        log.info("charge", extra={"fields": charge_log_fields(charge)})


class _PinMissing(ClaimError):
    def __init__(self) -> None:
        super().__init__("this card asks for a PIN at this amount and none was given")


def charge_from_entry(entry: JournalEntry) -> Charge:
    """A charge rebuilt from its journal row (after a restart)."""
    charge = Charge(
        id=entry.id, amount_sats=entry.amount_msat // 1000, memo=entry.memo, reader=None,
        expires_at=entry.created_at, created_at=entry.created_at, state=entry.state,
        uid=entry.uid, counter=entry.counter, card_id=entry.card_id, verified=entry.verified,
        tap_key=entry.tap_key, issuer_host=entry.issuer_host, payment_hash=entry.payment_hash,
        bolt11=entry.bolt11, invoice_id=entry.invoice_id,
        invoice_expires_at=entry.invoice_expires_at, k1_hash=entry.k1_hash, reason=entry.reason,
    )
    return charge


def _invoice_of(charge: Charge) -> Invoice:
    assert charge.bolt11 is not None and charge.payment_hash is not None
    expires = datetime.fromtimestamp(charge.invoice_expires_at or time.time(), UTC)
    return Invoice(bolt11=charge.bolt11, payment_hash=charge.payment_hash,
                   id=charge.invoice_id or charge.payment_hash, amount_msat=charge.amount_msat,
                   expires_at=expires)


def charge_log_fields(charge: Charge) -> dict[str, Any]:
    """The one log line per charge: short card id, amount, state, reason, ms. No secrets."""
    card = charge.card_id[:8] if charge.card_id else None
    if card is None and charge.uid:
        card = charge.uid if len(charge.uid) <= 8 else f"{charge.uid[:4]}…{charge.uid[-2:]}"
    return {
        "charge": charge.id[:8],
        "card": card,
        "amount_sats": charge.amount_sats,
        "state": charge.state,
        "reason": charge.reason,
        "verified": charge.verified,
        "ms": None if charge.ms is None else round(charge.ms, 1),
    }
