"""The operator's day in headless Chromium, against the real tracker started from its CLI.

Sign in, watch a tap posted by a station appear on the dashboard without a reload, open the
card, rename and block it, filter the taps and download the CSV export. Screenshots go to
/tmp/tracker-*.png for a human look.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_kit import CHROMIUM, CHROMIUM_ARGS, PASSWORD, require_browser

CARD = "04C0FFEE123456"
OTHER_CARD = "04BEEF00112233"

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "tracker.cli", *args],
        env=env,
        input=stdin,
        text=True,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def tracker(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A migrated SQLite tracker served by ``tracker serve`` in a subprocess."""
    port = _free_port()
    env = {
        **os.environ,
        "TRACKER_DATABASE_URL": f"sqlite:///{tmp_path / 'tracker.sqlite'}",
        "TRACKER_SECRET_KEY": "e2e-" + os.urandom(16).hex(),
        "TRACKER_LOG_LEVEL": "warning",
    }
    _cli(env, "db", "upgrade")
    _cli(env, "users", "add", "alice", "--role", "admin", "--password-stdin", stdin=PASSWORD)
    token = json.loads(_cli(env, "--json", "stations", "add", "till-1"))["token"]
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "tracker.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/login", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail("tracker did not start: " + (tmp_path / "server.log").read_text())
            time.sleep(0.1)
        yield {"base": base, "token": token, "env": env}
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _tap(base: str, token: str, uid: str, counter: int, outcome: str = "accepted") -> Any:
    body = {
        "idempotency_key": f"{uid}:{counter}" if outcome == "accepted" else f"r-{uid}-{counter}",
        "card_uid": uid,
        "card_id": None,
        "counter": counter,
        "station_time": "2026-11-26T10:00:00+00:00",
        "outcome": outcome,
        "reason": None if outcome == "accepted" else "counter replay",
        "issuer_host": "pay.example.com",
    }
    return httpx.post(
        base + "/api/v1/taps", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def test_operator_day_in_a_real_browser(tracker: dict[str, Any], tmp_path: Path) -> None:
    require_browser()
    from playwright.sync_api import expect, sync_playwright

    base, token = tracker["base"], tracker["token"]
    assert _tap(base, token, OTHER_CARD, 1).status_code == 201
    assert _tap(base, token, CARD, 1).status_code == 201

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(
            accept_downloads=True, viewport={"width": 1280, "height": 900}
        )
        page = context.new_page()
        page.set_default_timeout(15_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))

        # Sign in (the dashboard sends us to /login and back).
        page.goto(base + "/")
        expect(page).to_have_url(f"{base}/login?next=%2F")
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        expect(page.locator("h1")).to_have_text("Dashboard")
        expect(page.locator("body")).to_have_attribute("data-live", "on")

        # A station posts a tap; it appears without a reload, and the counter follows.
        page.evaluate("window.__sameDocument = true")
        taps_today = page.locator('[data-stat="taps_today"]')
        expect(taps_today).to_have_text("2")
        posted = _tap(base, token, CARD, 2)
        assert posted.status_code == 201
        tap_id = posted.json()["tap"]["id"]
        new_row = page.locator(f'table[data-live="tap"] tr[data-id="{tap_id}"]')
        expect(new_row).to_be_visible()
        expect(new_row.locator(f'a[data-card-uid="{CARD}"]')).to_have_attribute("title", CARD)
        expect(new_row).to_contain_text("till-1")
        expect(taps_today).to_have_text("3")
        # Its claim shows up as a pending payout, then turns completed in place.
        station = {"Authorization": f"Bearer {token}"}
        claim = httpx.post(
            base + "/api/v1/payouts",
            headers=station,
            timeout=10,
            json={
                "tap_idempotency_key": f"{CARD}:2",
                "amount_msat": 21_000_000,
                "state": "AwaitingPayment",
            },
        )
        assert claim.status_code == 201, claim.text
        payout_id = claim.json()["payout"]["id"]
        payout_row = page.locator(f'table[data-live="payout"] tr[data-id="{payout_id}"]')
        expect(payout_row.locator(".badge")).to_have_text("AwaitingPayment")
        expect(payout_row).to_contain_text("21\u202f000")
        expect(page.locator('[data-stat="pending_payouts"]')).to_have_text("1")
        done = httpx.patch(
            base + f"/api/v1/payouts/{payout_id}",
            headers=station,
            json={"state": "Completed"},
            timeout=10,
        )
        assert done.status_code == 200, done.text
        expect(payout_row.locator(".badge")).to_have_text("Completed")
        expect(page.locator('[data-stat="completed_payouts"]')).to_have_text("1")
        expect(page.locator('[data-stat="pending_payouts"]')).to_have_text("0")
        # The charts redraw too: the completed payout now has a bar in the volume chart.
        volume_panel = page.locator("[data-charts-url] .panel").first
        expect(volume_panel).not_to_contain_text("no data for this period")
        assert page.evaluate("window.__sameDocument") is True  # no reload happened
        page.screenshot(path="/tmp/tracker-dashboard.png", full_page=True)

        # Open the card from the live row, rename it, block it.
        new_row.locator(f'a[data-card-uid="{CARD}"]').click()
        expect(page).to_have_url(f"{base}/cards/{CARD}")
        page.fill("input[name=alias]", "Café <Till> card")
        page.click("text=Save alias")
        expect(page.locator(".flash")).to_have_text("Alias saved.")
        expect(page.locator("#card-title")).to_have_text("Café <Till> card")
        page.click("text=Block card…")  # a confirm page that asks why
        page.fill("input[name=reason]", "lost at the fair")
        page.click("#confirm-block")
        expect(page.locator(".flash")).to_have_text("Card blocked.")
        expect(page.locator("#card-status")).to_have_text("blocked")
        expect(page.locator("#blocked-note")).to_contain_text("Blocked by alice on ")
        expect(page.locator("#blocked-note")).to_contain_text(": lost at the fair.")
        assert _tap(base, token, CARD, 3).status_code == 403  # stations now refuse it
        page.screenshot(path="/tmp/tracker-card.png", full_page=True)

        # Filter the taps to this card and download exactly that as CSV.
        page.goto(base + "/taps")
        page.fill("input[name=card]", CARD)
        page.select_option("select[name=outcome]", "accepted")
        page.click("form.filters button[type=submit]")
        rows = page.locator("table.taps tbody tr[data-id]")
        expect(rows).to_have_count(2)
        with page.expect_download() as download_info:
            page.locator('a[data-export="csv"]').first.click()
        saved = tmp_path / "taps.csv"
        download_info.value.save_as(saved)
        page.screenshot(path="/tmp/tracker-taps.png", full_page=True)
        context.close()
        browser.close()

    with saved.open(newline="") as fh:
        exported = list(csv.DictReader(fh))
    assert sorted(int(r["counter"]) for r in exported) == [1, 2]
    assert {r["card_uid"] for r in exported} == {CARD}
    assert {r["outcome"] for r in exported} == {"accepted"}
    assert errors == []
