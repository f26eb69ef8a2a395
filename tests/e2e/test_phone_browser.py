"""The tracker on a phone (390 px) and offline, in headless Chromium (issue 12).

Every page, empty and with data: the header stays on one line, the key columns of every
table (time, card, amount, state/outcome) are on screen with no sideways scrolling, charts
are the phone-sized drawing, and no request the browser makes leaves the tracker, the API
docs included (Swagger UI is served from the installed package, under the same CSP).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_kit import CHROMIUM, CHROMIUM_ARGS, PHONE, require_browser, sign_in, watched_page
from test_browser import _tap, tracker  # the same real tracker, started from its CLI

pytestmark = [pytest.mark.browser, pytest.mark.slow]
__all__ = ["tracker"]  # the fixture, re-used

CARD = "04C0FFEE123456"
KEY_COLUMNS = ("time", "card", "amount", "state", "outcome")


def _layout_problems(page: Any) -> list[str]:
    """What a phone user would notice: a wrapped header, sideways scroll, hidden key columns."""
    return list(
        page.evaluate(
            """(keys) => {
      const out = [];
      const vw = document.documentElement.clientWidth;
      const header = document.querySelector("header.top");
      if (header && header.getBoundingClientRect().height > 56) out.push("header wraps");
      const signOut = document.querySelector("header.top .who button");
      if (signOut && signOut.getBoundingClientRect().height > 30) out.push("Sign out wraps");
      const nav = document.querySelector("header.top nav");
      for (const a of document.querySelectorAll("header.top nav a")) {
        if (nav && a.getBoundingClientRect().right > nav.getBoundingClientRect().right + 1)
          out.push("nav link cut: " + a.textContent);
      }
      if (document.documentElement.scrollWidth > vw + 1) out.push("page scrolls sideways");
      for (const th of document.querySelectorAll("th[data-col]")) {
        if (!keys.includes(th.dataset.col)) continue;
        const box = th.getBoundingClientRect();
        if (box.width === 0) out.push("hidden column " + th.dataset.col);
        if (box.right > vw + 1) out.push("column off screen " + th.dataset.col);
      }
      for (const svg of document.querySelectorAll("svg.chart")) {
        const box = svg.getBoundingClientRect();
        if (box.width > 0 && box.right > vw + 1) out.push("chart off screen");
      }
      for (const panel of document.querySelectorAll(".panel")) {
        if (panel.querySelector("table") && panel.scrollWidth > panel.clientWidth + 1)
          out.push("table scrolls sideways: " + (panel.querySelector("h2") || {}).textContent);
      }
      return out;
    }""",
            list(KEY_COLUMNS),
        )
    )


def test_every_page_fits_a_phone_and_nothing_leaves_the_tracker(
    tracker: dict[str, Any], tmp_path: Path
) -> None:
    require_browser()
    from playwright.sync_api import expect, sync_playwright

    base, token = tracker["base"], tracker["token"]
    requests: list[str] = []
    problems: dict[str, list[str]] = {}
    errors: list[str] = []
    pages = ["/", "/taps", "/payouts", "/cards", "/stations"]

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
        page = watched_page(context, requests=requests, errors=errors).page
        sign_in(page, base)

        for path in pages:  # empty
            page.goto(base + path)
            problems[f"empty {path}"] = _layout_problems(page)

        station = {"Authorization": f"Bearer {token}"}
        for counter in (1, 2, 3):
            assert _tap(base, token, CARD, counter).status_code == 201
            answer = httpx.post(
                base + "/api/v1/payouts",
                headers=station,
                timeout=10,
                json={
                    "tap_idempotency_key": f"{CARD}:{counter}",
                    "amount_msat": 1_234_000_000,
                    "state": "AwaitingApproval" if counter < 3 else "Completed",
                },
            )
            assert answer.status_code == 201, answer.text
        assert _tap(base, token, CARD, 3, outcome="refused").status_code == 201

        for path in [*pages, f"/cards/{CARD}", "/payouts/1"]:  # with data
            page.goto(base + path)
            problems[path] = _layout_problems(page)
            page.screenshot(path=f"/tmp/tracker-phone{path.replace('/', '-')}.png")
        page.goto(base + "/")
        expect(page.locator(".chart-narrow svg").first).to_be_visible()
        expect(page.locator(".chart-wide svg").first).to_be_hidden()

        # The API docs render from the tracker's own copy of Swagger UI.
        page.goto(base + "/api/docs")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("Bolt Card tracker")
        expect(page.locator(".opblock-tag").first).to_be_visible()
        context.close()
        browser.close()

    assert {k: v for k, v in problems.items() if v} == {}
    outside = [u for u in requests if not u.startswith(base + "/") and not u.startswith("data:")]
    assert outside == []
    assert any(u.startswith(base + "/api/docs/assets/") for u in requests)
    assert errors == []
