"""The lists in headless Chromium at 1400 px and 390 px (issue 12): empty lists that explain
and link to the tracker's own help, sorting by clicking a header, the copy button copying the
full UID (also on a row the page script drew live), nothing scrolling sideways on a phone and
no request leaving the tracker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_kit import CHROMIUM, CHROMIUM_ARGS, PHONE, WIDE, require_browser, sign_in, watched_page
from test_browser import _tap, tracker
from test_phone_browser import _layout_problems

pytestmark = [pytest.mark.browser, pytest.mark.slow]
__all__ = ["tracker"]  # the fixture, re-used

CARD = "04C0FFEE123456"
SHORT = "04C0\u20263456"
LATE_CARD = "04BEEF00112233"
AMOUNTS = (700, 50, 2500, 1000)  # sats, posted in this order
VIEWPORTS = {"wide": WIDE, "phone": PHONE}


def _payout(base: str, token: str, counter: int, sats: int) -> None:
    assert _tap(base, token, CARD, counter).status_code == 201
    answer = httpx.post(
        base + "/api/v1/payouts",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
        json={"tap_idempotency_key": f"{CARD}:{counter}", "amount_msat": sats * 1000,
              "state": "Completed"},
    )
    assert answer.status_code == 201, answer.text


def _amounts(page: Any) -> list[int]:
    cells = page.locator("table.payouts tbody td.num").all_inner_texts()
    return [int("".join(ch for ch in text if ch.isdigit())) for text in cells]


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_lists_explain_sort_and_copy_in_a_browser(
    tracker: dict[str, Any], tmp_path: Path, viewport: str
) -> None:
    require_browser()
    from playwright.sync_api import expect, sync_playwright

    base, token = tracker["base"], tracker["token"]
    phone = viewport == "phone"
    requests: list[str] = []
    problems: dict[str, list[str]] = {}
    errors: list[str] = []

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(
            viewport=VIEWPORTS[viewport], is_mobile=phone, has_touch=phone
        )
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
        page = watched_page(context, requests=requests, errors=errors).page
        sign_in(page, base)

        # Empty: the dashboard and each list say what to set up; the help is the tracker's own.
        expect(page.locator("#getting-started")).to_contain_text("tracker stations add till-1")
        problems["empty /"] = _layout_problems(page)
        for path, words in (("/payouts", "No payouts yet."), ("/taps", "No taps yet."),
                            ("/cards", "No cards yet.")):
            page.goto(base + path)
            expect(page.locator(".empty-state")).to_contain_text(words)
            problems[f"empty {path}"] = _layout_problems(page)
        page.goto(base + "/payouts")
        expect(page.locator(".empty-state")).to_contain_text(base + "/webhooks/btcpay/shop")
        page.screenshot(path=f"/tmp/tracker-lists-empty-payouts-{viewport}.png")
        page.click("text=How payouts reach the tracker")
        expect(page).to_have_url(base + "/help#payouts")
        expect(page.locator("#payouts h2")).to_be_visible()
        problems["/help"] = _layout_problems(page)

        for counter, sats in enumerate(AMOUNTS, start=1):
            _payout(base, token, counter, sats)

        # Sort by clicking the header; the arrow shows the order; again reverses it.
        page.goto(base + "/payouts")
        assert _amounts(page) == [1000, 2500, 50, 700]  # newest first
        page.click("th[data-col=amount] a.sort")
        expect(page).to_have_url(base + "/payouts?sort=amount&dir=desc")
        assert _amounts(page) == sorted(AMOUNTS, reverse=True)
        expect(page.locator("th[data-col=amount] .arrow")).to_have_text(" ▼")
        page.screenshot(path=f"/tmp/tracker-lists-payouts-{viewport}.png")
        problems["/payouts sorted"] = _layout_problems(page)
        page.click("th[data-col=amount] a.sort")
        assert _amounts(page) == sorted(AMOUNTS)
        expect(page.locator("th[data-col=amount]")).to_have_attribute("aria-sort", "ascending")

        # A filter that hides every row says so; "clear filters" keeps the order.
        page.fill("input[name=min_sats]", "99999")
        page.click("form.filters button[type=submit]")
        expect(page.locator(".empty-state")).to_contain_text("No payouts match these filters")
        page.click("[data-clear-filters]")
        expect(page).to_have_url(base + "/payouts?sort=amount&dir=asc")
        assert _amounts(page) == sorted(AMOUNTS)

        # The short name is shown; the button copies the full UID.
        first_card = page.locator("table.payouts tbody tr").first.locator("a[data-card-uid]")
        expect(first_card).to_have_text(SHORT)
        expect(first_card).to_have_attribute("title", CARD)
        button = page.locator("table.payouts tbody tr").first.locator("button.copy")
        button.click()
        expect(button).to_have_attribute("data-copied", "yes")
        assert page.evaluate("navigator.clipboard.readText()") == CARD

        # A row drawn live by the page script carries the same label and a working button.
        page.goto(base + "/")
        expect(page.locator("body")).to_have_attribute("data-live", "on")
        assert _tap(base, token, LATE_CARD, 1).status_code == 201
        live_row = page.locator("table.taps tbody tr.fresh").first
        expect(live_row.locator("a[data-card-uid]")).to_have_text("04BE\u20262233")
        live_row.locator("button.copy").click()
        expect(live_row.locator("button.copy")).to_have_attribute("data-copied", "yes")
        assert page.evaluate("navigator.clipboard.readText()") == LATE_CARD
        problems["/ with data"] = _layout_problems(page)

        for path in ("/taps?sort=counter&dir=asc", "/cards?sort=card", "/stations?sort=heartbeat"):
            page.goto(base + path)
            expect(page.locator("th[aria-sort]")).to_have_count(1)
            problems[path] = _layout_problems(page)
        page.screenshot(path=f"/tmp/tracker-lists-{viewport}.png")
        context.close()
        browser.close()

    assert {k: v for k, v in problems.items() if v} == {}
    outside = [u for u in requests if not u.startswith(base + "/") and not u.startswith("data:")]
    assert outside == []
    assert errors == []
