"""One charge from the tap to the merchant's invoice, with our real pieces.

The issuer is an ``httpx.MockTransport`` fake with BTCPay's answer shapes (ERROR bodies on
HTTP 400, k1 = "<p>-<c>", the callback = the card's own URL); when it accepts a claim it pays
the merchant's invoice through the REAL demo wallet (LNbits API on loopback) from its own
wallet, as an issuer running on LNbits would. The merchant's invoice source is our LNbits
client against that same wallet, so "paid" here means the invoice really was settled.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from station.claim import charge as states
from station.claim.book import ChargeBook
from station.claim.charge import ChargeRegistry
from station.claim.client import LnurlWithdrawClient
from station.claim.journal import ChargeJournal
from station.claim.runner import ChargeRunner, TappedCard
from station.claim.watch import InvoiceWatcher
from station.demo.wallet import WalletConfig, create_app
from station.invoices import make_source
from station.serve import serve_in_thread

MERCHANT = WalletConfig("merchant", "merchant-invoice-key", "merchant-admin-key", 0)
ISSUER = WalletConfig("issuer", "issuer-invoice-key", "issuer-admin-key", 50_000_000)
HOST = "pay.example"
P = "4E2E289D945A66BB13377A728884E867"
C = "E19CCB1FED8892CE"
CARD_URL = f"lnurlw://{HOST}/boltcard?p={P}&c={C}"


@dataclass
class FakeBtcpay:
    """BTCPay's /boltcard as the station meets it; pays through the demo wallet."""

    wallet_url: str
    wallet: httpx.Client
    max_msat: int = 2_100_000
    pin_limit: int | None = None
    first_error: str | None = None
    callback_error: str | None = None
    pay: bool = True
    drop_after_paying: bool = False
    callbacks: list[str] = field(default_factory=list)
    pins: list[str | None] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        query = parse_qs(urlsplit(str(request.url)).query)
        if "pr" not in query:
            if self.first_error:
                return httpx.Response(400, json={"status": "ERROR", "reason": self.first_error})
            body: dict[str, object] = {
                "tag": "withdrawRequest", "callback": f"https://{HOST}/boltcard?p={P}&c={C}",
                "k1": f"{P}-{C}", "defaultDescription": "Shop pull payment",
                "minWithdrawable": 1000, "maxWithdrawable": self.max_msat,
                "currentBalance": self.max_msat,
                "balanceCheck": f"https://{HOST}/boltcard?p={P}&c={C}",
            }
            if self.pin_limit is not None:
                body["pinLimit"] = self.pin_limit
            return httpx.Response(200, json=body)
        self.callbacks.append(str(request.url))
        pin = query.get("pin", [None])[0]
        self.pins.append(pin)
        if self.pin_limit is not None and pin != "1234":
            return httpx.Response(400, json={"status": "ERROR", "reason": "Wrong PIN"})
        if self.callback_error:
            return httpx.Response(400, json={"status": "ERROR", "reason": self.callback_error})
        if self.pay:
            paid = self.wallet.post(
                f"{self.wallet_url}/api/v1/payments", headers={"X-Api-Key": ISSUER.admin_key},
                json={"out": True, "bolt11": query["pr"][0]},
            )
            assert paid.status_code == 201, paid.text
        if self.drop_after_paying:
            raise httpx.ReadTimeout("the issuer took too long", request=request)
        return httpx.Response(200, json={"status": "OK"})


@dataclass
class Rig:
    issuer: FakeBtcpay
    registry: ChargeRegistry
    runner: ChargeRunner
    watcher: InvoiceWatcher
    journal: ChargeJournal
    records: list[dict[str, object]]
    wallet_invoices: Callable[[], int]
    make_runner: Callable[..., tuple[ChargeRunner, InvoiceWatcher]]


@pytest.fixture
def wallet() -> Iterator[str]:
    url, stop = serve_in_thread(create_app([MERCHANT, ISSUER]))
    yield url
    stop()


@pytest.fixture
def rig(wallet: str, tmp_path) -> Iterator[Rig]:
    http = httpx.Client(timeout=10)
    issuer = FakeBtcpay(wallet, http)
    records: list[dict[str, object]] = []
    journal = ChargeJournal(tmp_path / "charges.sqlite")
    source = make_source("lnbits", wallet, MERCHANT.invoice_key, None, http)
    made: list[InvoiceWatcher] = []

    def make_runner(pin: Callable[..., str | None] | None = None,
                    journal: ChargeJournal = journal) -> tuple[ChargeRunner, InvoiceWatcher]:
        book = ChargeBook(journal, records.append)
        watcher = InvoiceWatcher(source, book.settle, first_delay=0.02, max_delay=0.1)
        client = LnurlWithdrawClient(httpx.Client(transport=httpx.MockTransport(issuer)),
                                     allowed_hosts=[HOST])
        runner = ChargeRunner(withdraw=client, invoices=source, book=book, watcher=watcher,
                              settle_wait=2.0, **({"pin_prompt": pin} if pin else {}))
        made.append(watcher)
        return runner, watcher

    runner, watcher = make_runner()

    def invoices() -> int:
        got = http.get(f"{wallet}/api/v1/wallet", headers={"X-Api-Key": MERCHANT.invoice_key})
        return int(got.json()["balance"])

    yield Rig(issuer, ChargeRegistry(), runner, watcher, journal, records, invoices, make_runner)
    for w in made:
        w.stop()
    http.close()


def tap(key: str = "04A1B2C3D4E5F6:7") -> TappedCard:
    return TappedCard(url=CARD_URL, tap_key=key, uid="04A1B2C3D4E5F6", counter=7,
                      card_id=None, verified=True, host=HOST)


def states_sent(records: list[dict[str, object]]) -> list[object]:
    return [r["state"] for r in records]


def test_paid_the_merchant_balance_grows_and_the_tracker_hears_each_step(rig: Rig) -> None:
    charge = rig.registry.arm(2100, "Coffee")
    rig.runner.run(rig.registry.take("r"), tap())
    assert charge.state == states.PAID, charge.reason
    assert rig.wallet_invoices() == 2_100_000  # msat, really settled
    assert states_sent(rig.records) == ["sending", "claimed", "paid"]
    first = rig.records[0]
    assert first["amount_msat"] == 2_100_000 and first["tap_key"] == "04A1B2C3D4E5F6:7"
    assert first["k1_hash"] and f"{P}-{C}" not in json.dumps(rig.records)
    assert len(rig.issuer.callbacks) == 1
    assert rig.journal.get(charge.id).state == states.PAID
    kinds = [e.kind for e in charge.events]
    assert kinds.index("tapped") < kinds.index("invoice") < kinds.index("callback") \
        < kinds.index("outcome")


def test_issuer_error_on_the_first_request_refuses_before_any_invoice(rig: Rig) -> None:
    rig.issuer.first_error = "Replayed or expired query"
    charge = rig.registry.arm(2100)
    rig.runner.run(rig.registry.take("r"), tap())
    assert charge.state == states.REFUSED
    assert charge.reason == "Replayed or expired query"
    assert rig.records == [] and rig.issuer.callbacks == []


def test_amount_above_the_issuers_max_is_refused_before_any_invoice(rig: Rig) -> None:
    charge = rig.registry.arm(5000)  # max 2,100 sats
    rig.runner.run(rig.registry.take("r"), tap())
    assert charge.state == states.REFUSED and "outside the issuer's range" in charge.reason
    assert rig.records == [] and rig.issuer.callbacks == []


def test_issuer_refusing_the_callback_is_refused_with_its_words(rig: Rig) -> None:
    rig.issuer.callback_error = "Payment cancelled: (Claim result: Overdraft)"
    charge = rig.registry.arm(2100)
    rig.runner.run(rig.registry.take("r"), tap())
    assert charge.state == states.REFUSED
    assert charge.reason == "Payment cancelled: (Claim result: Overdraft)"
    assert states_sent(rig.records) == ["sending", "refused"]
    assert rig.wallet_invoices() == 0


def test_callback_timeout_becomes_unknown_then_paid_from_the_invoice(rig: Rig) -> None:
    rig.issuer.drop_after_paying = True
    rig.runner.settle_wait = 0  # leave it all to the background watcher
    charge = rig.registry.arm(2100)
    rig.runner.run(rig.registry.take("r"), tap())
    assert charge.state == states.UNKNOWN
    rig.watcher.start()
    assert charge.wait_final(5), charge.state
    assert charge.state == states.PAID
    assert len(rig.issuer.callbacks) == 1  # never re-sent
    assert states_sent(rig.records) == ["sending", "unknown", "paid"]


def test_one_tap_is_claimed_once(rig: Rig) -> None:
    rig.registry.arm(2100)
    rig.runner.run(rig.registry.take("r"), tap())
    second = rig.registry.arm(2100)
    rig.runner.run(rig.registry.take("r"), tap())  # the same tap key again
    assert second.state == states.REFUSED and "already claimed" in second.reason
    assert len(rig.issuer.callbacks) == 1


def test_pin_asked_when_the_amount_reaches_pin_limit(rig: Rig) -> None:
    rig.issuer.pin_limit = 1_000_000
    answers = iter(["9999", "1234"])
    runner, _ = rig.make_runner(pin=lambda charge, attempt: next(answers))
    charge = rig.registry.arm(2100)
    runner.run(rig.registry.take("r"), tap())
    assert charge.state == states.PAID, charge.reason
    assert rig.issuer.pins == ["9999", "1234"]
    assert [e.data["attempt"] for e in charge.events if e.kind == "pin_required"] == [1, 2]
    assert "1234" not in json.dumps([e.data for e in charge.events]) + json.dumps(rig.records)


def test_three_wrong_pins_end_the_charge(rig: Rig) -> None:
    rig.issuer.pin_limit = 1_000_000
    runner, _ = rig.make_runner(pin=lambda charge, attempt: "0000")
    charge = rig.registry.arm(2100)
    runner.run(rig.registry.take("r"), tap())
    assert charge.state == states.REFUSED and "wrong PIN 3 times" in charge.reason
    assert len(rig.issuer.callbacks) == 3


def test_no_pin_given_refuses_without_sending(rig: Rig) -> None:
    rig.issuer.pin_limit = 1_000_000
    charge = rig.registry.arm(2100)
    rig.runner.run(rig.registry.take("r"), tap())
    assert charge.state == states.REFUSED and "PIN" in charge.reason
    assert rig.issuer.callbacks == [] and rig.records == []


def test_restart_after_a_crash_mid_claim_settles_from_the_invoice(rig: Rig, tmp_path) -> None:
    """The station died after journaling the claim and sending the callback, before it could
    record the answer: a new runner on the same journal must not call the issuer again."""
    rig.issuer.drop_after_paying = True
    charge = rig.registry.arm(2100)
    rig.runner.run(rig.registry.take("r"), tap())
    rig.journal.update(charge.id, states.SENDING)  # as if the answer was never recorded
    rig.journal.close()
    journal = ChargeJournal(tmp_path / "charges.sqlite")
    runner, watcher = rig.make_runner(journal=journal)
    before = len(rig.issuer.callbacks)
    recovered = runner.recover()
    assert [c.id for c in recovered] == [charge.id]
    watcher.start()
    assert recovered[0].wait_final(5)
    assert recovered[0].state == states.PAID
    assert len(rig.issuer.callbacks) == before
    assert journal.get(charge.id).state == states.PAID


def test_invoice_that_expires_unpaid_settles_as_expired(rig: Rig) -> None:
    rig.issuer.pay = False
    runner, watcher = rig.make_runner()
    runner.invoice_expiry = 10
    runner.settle_wait = 0.1
    charge = rig.registry.arm(2100)
    runner.run(rig.registry.take("r"), tap())
    assert charge.state == states.CLAIMED
    watcher._wall = lambda: time.time() + 60  # the invoice's 10 s are over
    watcher.start()
    assert charge.wait_final(5)
    assert charge.state == states.EXPIRED
