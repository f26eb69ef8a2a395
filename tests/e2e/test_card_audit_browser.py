"""The card page and the audit log in headless Chromium, at 1400 px and at 390 px (issue 12).

An admin opens a card: its alias-less identity is the short UID with the full UID on hover,
the copy button puts the UID on the clipboard, payouts come before taps, and the 30-day
activity chart is drawn. Blocking asks for confirmation and a reason, then the page says who
blocked it and when. ``/audit`` lists exactly the actions just taken, newest first; a viewer
is refused. No request leaves the tracker, and the phone layout has no sideways scroll.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from browser_kit import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PASSWORD,
    PHONE,
    WIDE,
    require_browser,
    sign_in,
    watched_page,
)
from test_browser import _cli, _tap, tracker  # the same real tracker, started from its CLI
from test_phone_browser import _layout_problems

pytestmark = [pytest.mark.browser, pytest.mark.slow]
__all__ = ["tracker"]  # the fixture, re-used

CARD = "04C0FFEE123456"


def _actions(page: Any) -> list[str]:
    return list(
        page.locator("#audit-log tbody tr[data-action]").evaluate_all(
            "rows => rows.map(r => r.dataset.action)"
        )
    )


def test_card_page_and_audit_log_at_1400_and_390(tracker: dict[str, Any]) -> None:
    require_browser()
    from playwright.sync_api import expect, sync_playwright

    base, token, env = tracker["base"], tracker["token"], tracker["env"]
    _cli(env, "users", "add", "victor", "--role", "viewer", "--password-stdin", stdin=PASSWORD)
    station = {"Authorization": f"Bearer {token}"}
    for counter in (1, 2):
        assert _tap(base, token, CARD, counter).status_code == 201
    paid = httpx.post(
        base + "/api/v1/payouts",
        headers=station,
        timeout=10,
        json={"tap_idempotency_key": f"{CARD}:2", "amount_msat": 21_000_000,
              "state": "Completed"},
    )
    assert paid.status_code == 201, paid.text

    requests: list[str] = []
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)

        # --- 1400 px, admin ---------------------------------------------------------------
        context = browser.new_context(viewport=WIDE)
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
        page = watched_page(context, requests=requests, errors=errors).page
        sign_in(page, base)
        page.goto(f"{base}/cards/{CARD}")

        title = page.locator("#card-title")
        expect(title).to_have_text("04C0…3456")
        expect(title).to_have_attribute("title", f"UID {CARD}")
        copy = page.locator("h1 button[data-copy]")
        copy.click()
        expect(copy).to_have_attribute("data-copied", "yes")
        assert page.evaluate("navigator.clipboard.readText()") == CARD

        payouts_y = page.locator("h2", has_text="Payouts").bounding_box()["y"]
        taps_y = page.locator("h2", has_text="Taps and counter history").bounding_box()["y"]
        assert payouts_y < taps_y
        wide_chart = page.locator("#card-activity .chart-wide svg.chart")
        expect(wide_chart).to_have_count(2)  # taps, and sats paid
        expect(wide_chart.first).to_be_visible()
        expect(page.locator("#card-activity .chart-narrow svg").first).to_be_hidden()
        bars = page.locator("#card-activity .chart-wide svg.chart").first.locator("rect")
        expect(bars).to_have_count(30)
        tips = bars.evaluate_all("rs => rs.map(r => r.querySelector('title').textContent)")
        assert tips[-1].endswith(": 2 taps"), tips[-1]
        assert sum(1 for t in tips if not t.endswith(": 0 taps")) == 1
        paid_tips = page.locator("#card-activity .chart-wide svg.chart").nth(1).locator(
            "rect title").all_text_contents()
        assert paid_tips[-1].endswith(": 21\u202f000 sats")
        page.screenshot(path="/tmp/tracker-card-wide.png", full_page=True)

        page.fill("input[name=holder]", "Bob the baker")
        page.click("text=Save holder")
        expect(page.locator(".flash")).to_have_text("Holder saved.")
        expect(page.locator("#card-holder")).to_have_text("Bob the baker")

        # Blocking: a confirm page; without a reason the browser will not send it.
        page.click("#block-card")
        expect(page).to_have_url(f"{base}/cards/{CARD}/block")
        page.click("#confirm-block")
        expect(page).to_have_url(f"{base}/cards/{CARD}/block")  # still asking why
        page.fill("input[name=reason]", "reported lost by Bob")
        page.click("#confirm-block")
        expect(page.locator(".flash")).to_have_text("Card blocked.")
        note = page.locator("#blocked-note")
        expect(note).to_contain_text("Blocked by alice on ")
        expect(note).to_contain_text(": reported lost by Bob.")
        shown = re.search(r"on (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \(([^)]+)\)", note.inner_text())
        assert shown is not None
        zone = page.evaluate("document.body.dataset.tz")
        assert shown.group(2) == zone
        assert _tap(base, token, CARD, 3).status_code == 403  # the stations refuse it

        page.click("text=Audit")
        expect(page.locator("h1")).to_have_text("Audit log")
        # Newest first: this session's actions, then the fixture's and this test's CLI calls
        # (alice and till-1 added, then victor).
        assert _actions(page) == [
            "card.block", "card.holder", "auth.login", "user.add", "station.add", "user.add"
        ]
        expect(page.locator("#audit-log tbody tr").nth(3)).to_contain_text("cli:")
        expect(page.locator("#audit-log tbody tr").first).to_contain_text("alice")
        page.select_option("select[name=action]", "card.block")
        page.click("form.filters button[type=submit]")
        assert _actions(page) == ["card.block"]
        page.screenshot(path="/tmp/tracker-audit-wide.png", full_page=True)
        context.close()

        # --- 390 px: the same pages fit a phone -------------------------------------------------
        context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
        page = watched_page(context, requests=requests, errors=errors).page
        sign_in(page, base)
        problems: dict[str, list[str]] = {}
        for path in (f"/cards/{CARD}", f"/cards/{CARD}/unblock", "/audit",
                     "/audit?action=issuer.remove"):
            page.goto(base + path)
            problems[path] = _layout_problems(page)
            page.screenshot(path=f"/tmp/tracker-phone{re.sub(r'[/?=]', '-', path)}.png",
                            full_page=True)
        page.goto(f"{base}/cards/{CARD}")
        expect(page.locator("#card-activity .chart-narrow svg").first).to_be_visible()
        expect(page.locator("#card-activity .chart-wide svg").first).to_be_hidden()
        page.locator("h1 button[data-copy]").click()
        assert page.evaluate("navigator.clipboard.readText()") == CARD
        page.click("#unblock-card")
        page.fill("input[name=reason]", "found again")
        page.click("#confirm-unblock")
        expect(page.locator(".flash")).to_have_text("Card unblocked.")
        expect(page.locator("#blocked-note")).to_have_count(0)
        context.close()

        # --- a viewer: no Audit link, and /audit is refused -----------------------------------
        context = browser.new_context(viewport=WIDE)
        page = watched_page(context, requests=requests, errors=errors).page
        sign_in(page, base, "victor")
        expect(page.locator("header.top nav a", has_text="Audit")).to_have_count(0)
        answer = page.goto(base + "/audit")
        assert answer is not None and answer.status == 403
        expect(page.locator("h1")).to_have_text("Not allowed")
        page.goto(f"{base}/cards/{CARD}")
        expect(page.locator("#block-card")).to_have_count(0)
        context.close()
        browser.close()

    assert problems == {path: [] for path in problems}
    assert errors == []
    outside = {urlsplit(u).netloc for u in requests} - {urlsplit(base).netloc}
    assert outside == set(), outside
