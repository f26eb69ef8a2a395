"""The stations page in headless Chromium at 1400 and 390 px (issue 12): health from a
station's heartbeats, dead records highlighted, and an admin rotating then revoking a token —
confirmation step, the new token shown once with a working copy button, the old token refused
at once — with no request leaving 127.0.0.1 and no CSP complaint."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_kit import CHROMIUM, CHROMIUM_ARGS, PHONE, WIDE, require_browser, sign_in, watched_page
from test_browser import tracker  # the same real tracker, started from its CLI
from test_phone_browser import _layout_problems

pytestmark = [pytest.mark.browser, pytest.mark.slow]
__all__ = ["tracker"]  # the fixture, re-used

VIEWPORTS = {"wide": WIDE, "phone": PHONE}


def _beat(base: str, token: str, **changes: Any) -> int:
    body = {
        "version": "0.1.0", "started_at": datetime.now(UTC).isoformat(), "uptime_s": 60,
        "period_s": 600, "outbox_pending": 12, "outbox_dead": 0, "readers_present": 1,
        "readers_total": 1, "problem": None, **changes,
    }
    answer = httpx.post(base + "/api/v1/stations/heartbeat", json=body, timeout=10,
                        headers={"Authorization": f"Bearer {token}"})
    return answer.status_code


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_rotate_and_revoke_a_station_token_from_the_page(
    tracker: dict[str, Any], tmp_path: Path, viewport: str,
) -> None:
    require_browser()
    from playwright.sync_api import expect, sync_playwright

    base, token = tracker["base"], tracker["token"]
    assert _beat(base, token, outbox_dead=2) == 200
    requests: list[str] = []
    errors: list[str] = []
    layout: dict[str, list[str]] = {}

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=VIEWPORTS[viewport],  # type: ignore[arg-type]
                                      is_mobile=viewport == "phone")
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
        page = watched_page(context, requests=requests, errors=errors).page
        sign_in(page, base)

        # A second station that never reported, added from the page.
        page.goto(base + "/stations")
        page.fill("form[action='/stations'] input[name=name]", "till-quiet")
        page.click("form[action='/stations'] button[type=submit]")
        expect(page.locator("#new-token")).to_be_visible()
        row = page.locator('tr[data-station="till-1"]')
        expect(row.locator("[data-health]")).to_have_text("online")
        expect(row.locator('td[data-col="outbox"]')).to_have_text("12")
        expect(row.locator('td[data-col="dead"]')).to_have_class(re.compile(r"\bdead\b"))
        expect(page.locator("[data-dead-help]")).to_contain_text("What to do")
        expect(page.locator('tr[data-station="till-quiet"] [data-health]')).to_have_text(
            "never reported")
        layout["list"] = _layout_problems(page)
        page.screenshot(path=f"/tmp/tracker-stations-{viewport}.png", full_page=True)

        # Rotate: a confirmation step first, then the new token once, copied with the button.
        row.locator('[data-action="rotate"]').click()
        expect(page.locator("h1")).to_contain_text("Rotate the token of till-1?")
        layout["confirm"] = _layout_problems(page)
        assert _beat(base, token) == 200  # nothing changed yet
        page.click("[data-confirm-button]")
        shown = page.locator("#new-token")
        expect(shown).to_be_visible()
        new_token = shown.inner_text().strip()
        assert new_token.startswith("bcst_") and new_token != token
        copy = page.locator(".token-line button.copy")
        copy.click()
        expect(copy).to_have_attribute("data-copied", "yes")
        assert page.evaluate("navigator.clipboard.readText()") == new_token
        layout["token"] = _layout_problems(page)
        page.screenshot(path=f"/tmp/tracker-stations-token-{viewport}.png", full_page=True)
        assert _beat(base, token) == 401  # the old token is refused at once
        assert _beat(base, new_token) == 200
        page.goto(base + "/stations")
        assert new_token not in page.content()  # never shown again

        # Revoke: confirmation, then even the new token is refused.
        page.locator('tr[data-station="till-1"] [data-action="revoke"]').click()
        expect(page.locator("h1")).to_contain_text("Revoke the token of till-1?")
        page.click("[data-confirm-button]")
        expect(page.locator("[data-notice=station]")).to_contain_text("is revoked")
        assert _beat(base, new_token) == 401
        expect(page.locator('tr[data-station="till-1"] [data-action="revoke"]')).to_have_count(0)
        context.close()
        browser.close()

    assert {k: v for k, v in layout.items() if v} == {}
    outside = [u for u in requests if not u.startswith(base + "/") and not u.startswith("data:")]
    assert outside == []
    assert any(u == base + "/static/copy.js" for u in requests)
    assert errors == []
