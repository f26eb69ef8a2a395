"""The POS page in headless Chromium, against a whole station on loopback.

The merchant types an amount on the keypad and a memo, presses Charge; the test lays the
emulated Bolt Card on the station's reader; the page follows the charge live to ``paid`` and the
merchant's wallet (the demo wallet, a TEST PEER) holds exactly that amount. Also: the PIN
prompt when the card's pinLimit applies, Cancel, the phone layout, the ``[pos] token`` prompt,
and that the page never asks anything of a host other than the station.

Screenshots of the phone layout go to /tmp/pos-390-{entry,pin,paid}.png for a human look.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from browser_kit import CHROMIUM, CHROMIUM_ARGS, PHONE, WIDE, require_browser

from tests.charge_rig import UID, charge_rig
from tests.pos_station import PosStation, pos_station

DESKTOP = WIDE
PIN = "4821"
TOKEN = "pos-token-for-the-browser-test"
SCREENSHOT = "/tmp/pos-390-paid.png"

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Till:
    """One browser tab on the POS page, with everything it asked for and complained about."""

    page: Any
    phone: bool
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def press(self, selector: str) -> None:
        button = self.page.locator(selector)
        if self.phone:
            button.tap()  # a finger, not a mouse: touch events on an emulated phone
        else:
            button.click()

    def type_amount(self, digits: str) -> None:
        for digit in digits:
            self.press(f'.keypad button[data-key="{digit}"]')

    def charge(self, digits: str, memo: str) -> None:
        self.type_amount(digits)
        self.page.fill("#memo", memo)
        self.press("#charge")

    def shows(self, state: str) -> None:
        """The state word as the merchant sees it on screen (rendered text, not the DOM's)."""
        from playwright.sync_api import expect

        expect(self.page.locator("#state")).to_have_text(state, use_inner_text=True)
        expect(self.page.locator("#state")).to_be_visible()

    def only_loopback(self, base: str) -> None:
        assert self.requests, "the page made no requests at all?"
        station = urlsplit(base).netloc
        for url in self.requests:
            parts = urlsplit(url)
            assert parts.hostname == "127.0.0.1" and parts.netloc == station, url


def open_till(browser: Any, base: str, viewport: dict[str, int]) -> Till:
    phone = viewport["width"] < 500
    context = browser.new_context(
        viewport=viewport, is_mobile=phone, has_touch=phone,
        device_scale_factor=3 if phone else 1,
    )
    page = context.new_page()
    page.set_default_timeout(30_000)
    till = Till(page, phone)
    page.on("request", lambda request: till.requests.append(request.url))
    page.on("pageerror", lambda exc: till.errors.append(str(exc)))
    page.on("console", lambda msg: till.errors.append(msg.text) if msg.type == "error" else None)
    page.goto(base + "/")
    return till


def close_till(till: Till, base: str, expected_401s: int = 0) -> None:
    """Close the tab: every request went to the station, no script error, no console error
    (but Chromium's own line for each 401 the token test provokes on purpose)."""
    till.page.context.close()
    till.only_loopback(base)
    refused = [e for e in till.errors if "status of 401" in e]
    assert len(refused) == expected_401s, till.errors
    assert [e for e in till.errors if e not in refused] == []


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1400px", "390px"])
def test_type_an_amount_tap_the_card_see_paid(
    browser: Any, tmp_path: Path, viewport: dict[str, int]
) -> None:
    from playwright.sync_api import expect

    with charge_rig(tmp_path) as rig, pos_station(rig) as pos:
        till = open_till(browser, pos.url, viewport)
        page = till.page
        expect(page.locator("h1")).to_have_text("Bolt Card charge")
        if till.phone:
            fits_the_phone(page)
        till.type_amount("2109")
        till.press('.keypad button[data-key="back"]')
        till.type_amount("0")
        expect(page.locator("#amount")).to_have_text("2\u202f100")
        page.fill("#memo", "Coffee")
        till.press("#charge")
        till.shows("armed")
        charge = pos.armed()
        assert (charge.amount_sats, charge.memo) == (2100, "Coffee")
        pos.tap(charge)
        till.shows("paid")
        expect(page.locator("#detail")).to_contain_text("Paid")
        expect(page.locator("#summary")).to_contain_text("2\u202f100 sats")
        expect(page.locator("#summary")).to_contain_text("Coffee")
        assert rig.merchant_balance_msat() == 2_100_000
        if till.phone:
            fits_the_phone(page, keypad=False)
            page.screenshot(path=SCREENSHOT, full_page=True)
        # The next customer: back to an empty keypad.
        till.press("#again")
        expect(page.locator("#amount")).to_have_text("0")
        expect(page.locator("#memo")).to_have_value("")
        close_till(till, pos.url)


def fits_the_phone(page: Any, keypad: bool = True) -> None:
    """Nothing scrolls sideways, and every button on screen is big enough for a thumb (44 px):
    the twelve keypad keys while an amount is typed, the others (Cancel, Send PIN, New charge)
    whenever they show."""
    assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
    heights = page.evaluate(
        "[...document.querySelectorAll(arguments_selector)].map(b => b.getBoundingClientRect())"
        ".filter(r => r.width > 0).map(r => r.height)".replace(
            "arguments_selector", "'.keypad button'" if keypad else "'button'")
    )
    assert heights and min(heights) >= 44, heights
    if keypad:
        assert len(heights) == 12


def test_the_phone_layout_before_a_charge(browser: Any, tmp_path: Path) -> None:
    with charge_rig(tmp_path) as rig, pos_station(rig) as pos:
        till = open_till(browser, pos.url, PHONE)
        fits_the_phone(till.page)
        till.type_amount("21000")
        till.page.screenshot(path="/tmp/pos-390-entry.png")
        till.press('.keypad button[data-key="clear"]')
        charge_button = till.page.locator("#charge").bounding_box()
        assert charge_button["height"] >= 44
        # The Charge button is on the first screen: no scrolling to take a payment.
        assert charge_button["y"] + charge_button["height"] <= PHONE["height"]
        till.charge("0", "")
        from playwright.sync_api import expect

        expect(till.page.locator("#error")).to_have_text("Type an amount first.")
        assert pos.registry.armed() == []
        close_till(till, pos.url)


def pin_card(pos: PosStation, limit_sats: int) -> None:
    """The issuer asks this card for a PIN from ``limit_sats`` on (its pinLimit)."""
    card = pos.rig.issuer.ledger.card(UID)
    assert card is not None
    card.pin, card.pin_limit_msat = PIN, limit_sats * 1000


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1400px", "390px"])
def test_a_pin_prompt_when_the_amount_reaches_the_pin_limit(
    browser: Any, tmp_path: Path, viewport: dict[str, int]
) -> None:
    from playwright.sync_api import expect

    with charge_rig(tmp_path) as rig, pos_station(rig) as pos:
        pin_card(pos, limit_sats=1000)
        till = open_till(browser, pos.url, viewport)
        till.charge("1500", "Dinner")
        pos.tap(pos.armed())
        prompt = till.page.locator("#pinform")
        expect(prompt).to_be_visible()
        expect(till.page.locator("#detail")).to_contain_text("PIN")
        if till.phone:
            fits_the_phone(till.page, keypad=False)
            till.page.screenshot(path="/tmp/pos-390-pin.png")
        till.page.fill("#pin", PIN)
        till.press("#pinform button[type=submit]")
        till.shows("paid")
        expect(prompt).to_be_hidden()
        assert rig.merchant_balance_msat() == 1_500_000
        close_till(till, pos.url)


def test_under_the_pin_limit_no_pin_is_asked(browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with charge_rig(tmp_path) as rig, pos_station(rig) as pos:
        pin_card(pos, limit_sats=1000)
        till = open_till(browser, pos.url, PHONE)
        till.charge("999", "")
        charge = pos.armed()
        pos.tap(charge)
        till.shows("paid")
        assert "pin_required" not in [e.kind for e in charge.events]
        expect(till.page.locator("#pinform")).to_be_hidden()
        assert rig.merchant_balance_msat() == 999_000
        close_till(till, pos.url)


def test_cancel_while_armed(browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with charge_rig(tmp_path) as rig, pos_station(rig) as pos:
        till = open_till(browser, pos.url, PHONE)
        till.charge("500", "Oops")
        till.shows("armed")
        charge = pos.armed()
        till.press("#cancel")
        till.shows("cancelled")
        expect(till.page.locator("#cancel")).to_be_hidden()
        assert charge.state == "cancelled" and pos.registry.armed() == []
        assert rig.merchant_balance_msat() == 0
        close_till(till, pos.url)


def test_with_a_pos_token_the_page_asks_for_it_and_still_prompts_for_the_pin(
    browser: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    with charge_rig(tmp_path) as rig, pos_station(rig, STATION_POS_TOKEN=TOKEN) as pos:
        pin_card(pos, limit_sats=1000)
        till = open_till(browser, pos.url, PHONE)
        till.charge("1200", "Books")
        expect(till.page.locator("#tokenform")).to_be_visible()
        assert pos.registry.armed() == []
        till.page.fill("#token", "not-the-token")
        till.press("#tokenform button[type=submit]")
        expect(till.page.locator("#error")).to_contain_text("token")
        till.page.fill("#token", TOKEN)
        till.press("#tokenform button[type=submit]")
        till.shows("armed")
        pos.tap(pos.armed())
        expect(till.page.locator("#pinform")).to_be_visible()
        till.page.fill("#pin", PIN)
        till.press("#pinform button[type=submit]")
        till.shows("paid")
        assert rig.merchant_balance_msat() == 1_200_000
        # The token never shows on the page, and never travels in a URL.
        assert TOKEN not in till.page.content()
        assert not any(TOKEN in url for url in till.requests)
        close_till(till, pos.url, expected_401s=2)



def test_a_wrong_pin_then_the_right_one_is_paid(browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with charge_rig(tmp_path) as rig, pos_station(rig) as pos:
        pin_card(pos, limit_sats=1000)
        till = open_till(browser, pos.url, PHONE)
        till.charge("1500", "Dinner")
        pos.tap(pos.armed())
        prompt = till.page.locator("#pinform")
        expect(prompt).to_be_visible()
        till.page.fill("#pin", "0000")
        till.press("#pinform button[type=submit]")
        expect(till.page.locator("#error")).to_contain_text("Wrong PIN")
        expect(till.page.locator("#detail")).to_contain_text("try 2 of 3")
        expect(prompt).to_be_visible()
        till.page.fill("#pin", PIN)
        till.press("#pinform button[type=submit]")
        till.shows("paid")
        assert rig.merchant_balance_msat() == 1_500_000
        close_till(till, pos.url)


def test_a_refusal_shows_the_reason(browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with charge_rig(tmp_path) as rig, pos_station(rig) as pos:
        till = open_till(browser, pos.url, PHONE)
        till.charge("5000", "")  # the card's pull payment holds 2 100 sats
        pos.tap(pos.armed())
        till.shows("refused")
        expect(till.page.locator("#detail")).to_contain_text("Refused.")
        expect(till.page.locator("#detail")).to_contain_text("2100")
        expect(till.page.locator("#again")).to_be_visible()
        assert rig.merchant_balance_msat() == 0
        close_till(till, pos.url)
