"""A charge's payout as the operator sees it, end to end with real processes on loopback.

The emulated Bolt Card sits behind the real pcscd (vpcd bridge); ``station charge --backend
pcsc`` runs as its own process and claims at the demo issuer (a BTCPay-like TEST PEER), which
pays through the demo wallet. The tracker follows that issuer exactly as an operator would set it
up: ``tracker issuers add demo …`` against its database. Then the payout the tracker shows is
the issuer's own record (its payout id, pull payment, revision), linked to the claim and the tap
that made it, and Completed — through a signed webhook in the first test, through ``tracker
reconcile --once`` with webhooks off in the second. Headless Chromium, signed in as an operator,
reads it off the dashboard, the card page and the payout page.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from browser_kit import CHROMIUM, CHROMIUM_ARGS, PASSWORD, require_browser
from charge_world import REPO, STATION_NAME, claims, wait_for
from station_rig import vpcd_reader_name
from tracker_live import SECRET_KEY, LiveTracker

from station.demo.webhooks import WebhookTarget
from station.emulator import store
from tests.charge_rig import API_KEY, UID, ChargeRig, charge_rig

pytestmark = [pytest.mark.pcsc, pytest.mark.browser, pytest.mark.slow]

OPERATOR = "alice"
WEBHOOK_SECRET = "e2e-webhook-secret-" + "w" * 16
AMOUNT_SATS = 2100
SATS_SHOWN = "2\u202f100"  # how the pages format 2100 sats
UID_HEX = UID.hex().upper()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def tracker_cli(tracker: LiveTracker, *args: str, stdin: str | None = None) -> str:
    """``tracker …`` as its own process on the live tracker's database (and secret key, so
    the issuer secrets it stores are readable by the serving process)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    env.update(TRACKER_DATABASE_URL=tracker.database_url, TRACKER_SECRET_KEY=SECRET_KEY)
    done = subprocess.run([sys.executable, "-m", "tracker", *args], input=stdin, env=env,
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return done.stdout


def follow_issuer(tracker: LiveTracker, rig: ChargeRig) -> None:
    out = tracker_cli(tracker, "issuers", "add", "demo", "--kind", "btcpay",
                      "--url", rig.issuer_url, "--store-id", "demo-store", "--api-key", API_KEY,
                      "--webhook-secret", WEBHOOK_SECRET, "--json")
    assert json.loads(out)["webhook_path"] == "/webhooks/btcpay/demo"
    assert API_KEY not in out and WEBHOOK_SECRET not in out


def charge_on_pcsc(rig: ChargeRig, tracker: LiveTracker, token: str) -> dict[str, Any]:
    """Lay the card on the virtual reader and run ``station charge 2100 --backend pcsc``."""
    from station.emulator.bridges.vpcd import VpcdBridge

    vpcd_reader_name()
    card, _ = store.load_or_create(rig.card_state, UID, save_new=False)
    bridge = VpcdBridge(card)
    try:
        bridge.insert(card)
        env = rig.station_env(STATION_TRACKER_URL=tracker.url, STATION_TRACKER_TOKEN=token)
        proc = subprocess.run(
            [sys.executable, "-m", "station", "charge", str(AMOUNT_SATS), "--memo", "Coffee",
             "--backend", "pcsc", "--reader", "Virtual PCD", "--timeout", "20", "--json"],
            capture_output=True, text=True, timeout=90, env=env, cwd=REPO,
        )
    finally:
        bridge.close()
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    assert out["state"] == "paid" and out["amount_msat"] == AMOUNT_SATS * 1000, out
    assert "station charge:" not in proc.stderr  # nothing left spooled for the tracker
    return out


def payout_rows(tracker: LiveTracker) -> list[dict[str, Any]]:
    with tracker.engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT p.*, i.name AS issuer_name FROM payout p "
            "LEFT JOIN issuer i ON i.id = p.issuer_pk ORDER BY p.id")).mappings().all()
    return [dict(r) for r in rows]


def history_sources(tracker: LiveTracker, payout_id: int) -> list[tuple[str, str]]:
    with tracker.engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT to_state, source FROM payout_state_change WHERE payout_pk = :p ORDER BY id"),
            {"p": payout_id}).all()
    return [(r[0], r[1]) for r in rows]


def assert_issuer_payout(tracker: LiveTracker, rig: ChargeRig, charged: dict[str, Any]) -> int:
    """One payout, the issuer's own record, linked to the one claim and its accepted tap."""
    rows = payout_rows(tracker)
    assert len(rows) == 1, rows
    payout = rows[0]
    assert payout["issuer_name"] == "demo" and payout["issuer_payout_id"], payout
    assert payout["pull_payment_id"] == "pp1" and payout["revision"] is not None
    assert payout["state"] == "Completed" and payout["amount_msat"] == AMOUNT_SATS * 1000
    at_issuer = rig.issuer.ledger.payout(payout["issuer_payout_id"])
    assert at_issuer is not None and at_issuer.state == "Completed"
    assert at_issuer.payment_hash == charged["payment_hash"]
    (claim,) = claims(tracker)
    assert claim["id"] is not None and claim["state"] == "paid"
    assert claim["payout_state"] == "Completed"
    with tracker.engine.connect() as conn:
        claim_payout, claim_tap = conn.execute(sa.text(
            "SELECT payout_pk, tap_pk FROM claim WHERE id = :c"), {"c": claim["id"]}).one()
    assert claim_payout == payout["id"] and claim_tap == payout["tap_pk"]
    (tap,) = tracker.taps()
    assert tap["outcome"] == "accepted" and tap["station"] == STATION_NAME
    assert tap["idempotency_key"] == claim["tap_key"]
    return int(payout["id"])


def signed_in(browser: Any, base: str) -> tuple[Any, list[str]]:
    """A tab signed in as the operator, on the dashboard with live updates on."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(base + "/")
    expect(page).to_have_url(f"{base}/login?next=%2F")
    page.fill("input[name=username]", OPERATOR)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Dashboard")
    return page, errors


def assert_row_completed(page: Any, payout_id: int) -> None:
    from playwright.sync_api import expect

    row = page.locator(f'table.payouts tr[data-id="{payout_id}"]')
    expect(row.locator(".badge")).to_have_text("Completed")
    expect(row).to_contain_text(SATS_SHOWN)
    expect(row).to_contain_text(STATION_NAME)


@pytest.fixture
def world(tmp_path: Path, pcscd: Any) -> Iterator[tuple[LiveTracker, str]]:
    """The live tracker (no background reconcile: only webhooks or the CLI link payouts), an
    operator to sign in as, and the station's token."""
    tracker = LiveTracker(tmp_path, reconcile_seconds=0)
    tracker.start()
    try:
        tracker_cli(tracker, "users", "add", OPERATOR, "--role", "admin", "--password-stdin",
                    stdin=PASSWORD + "\n")
        yield tracker, tracker.add_station(STATION_NAME)
    finally:
        tracker.close()


def test_a_pcsc_charge_shows_as_the_issuers_completed_payout_through_a_webhook(
    world: tuple[LiveTracker, str], tmp_path: Path, browser: Any
) -> None:
    tracker, token = world
    hook = WebhookTarget(f"{tracker.url}/webhooks/btcpay/demo", WEBHOOK_SECRET)
    with charge_rig(tmp_path, webhooks=[hook], webhook_retry_delays_s=(0.2, 0.5, 1.0)) as rig:
        follow_issuer(tracker, rig)
        charged = charge_on_pcsc(rig, tracker, token)
        assert rig.merchant_balance_msat() == AMOUNT_SATS * 1000 and rig.callbacks == 1

        def webhook_completed() -> bool:
            rows = payout_rows(tracker)
            return bool(rows) and rows[0]["state"] == "Completed" and rows[0]["revision"] == 1

        wait_for(webhook_completed, 20, "the webhook to bring the issuer's Completed payout")
        payout_id = assert_issuer_payout(tracker, rig, charged)
        # No poll runs (reconcile_seconds=0): the issuer's record came by the signed webhooks.
        with tracker.engine.connect() as conn:
            deliveries = conn.execute(sa.text("SELECT payout_id FROM webhook_delivery")).all()
        assert {d[0] for d in deliveries} == {payout_rows(tracker)[0]["issuer_payout_id"]}
        assert history_sources(tracker, payout_id)[-1] in (("Completed", "webhook"),
                                                           ("Completed", "station"))

    page, errors = signed_in(browser, tracker.url)
    assert_row_completed(page, payout_id)  # the dashboard's recent payouts
    page.goto(f"{tracker.url}/cards/{UID_HEX}")
    assert_row_completed(page, payout_id)
    page.screenshot(path="/tmp/payout-e2e-card.png", full_page=True)
    assert errors == []
    page.context.close()


def test_with_webhooks_off_the_payout_is_linked_only_by_reconcile_once(
    world: tuple[LiveTracker, str], tmp_path: Path, browser: Any
) -> None:
    tracker, token = world
    with charge_rig(tmp_path) as rig:
        follow_issuer(tracker, rig)
        charged = charge_on_pcsc(rig, tracker, token)
        (before,) = payout_rows(tracker)  # the station's claim made it; the issuer is unheard
        assert before["issuer_pk"] is None and before["issuer_payout_id"] is None, before
        assert before["pull_payment_id"] is None and before["revision"] is None
        assert before["tap_pk"] is not None
        report = json.loads(tracker_cli(tracker, "reconcile", "--once", "--json")
                            .strip().splitlines()[-1])
        assert report["issuer"] == "demo" and not report.get("error"), report
        assert report["linked"] == 1 and report["open_claims_unmatched"] == 0, report
        payout_id = assert_issuer_payout(tracker, rig, charged)
        assert payout_id == before["id"]  # the claim's row took the issuer's record, no second
        issuer_payout_id = payout_rows(tracker)[0]["issuer_payout_id"]

    from playwright.sync_api import expect

    page, errors = signed_in(browser, tracker.url)
    assert_row_completed(page, payout_id)
    page.goto(f"{tracker.url}/payouts/{payout_id}")
    expect(page.locator("h1 .badge")).to_have_text("Completed")
    expect(page.locator("#issuer-payout-id")).to_have_text(issuer_payout_id)
    expect(page.locator("#pull-payment-id")).to_have_text("pp1")
    expect(page.locator("body")).to_contain_text(f"{SATS_SHOWN} sats")
    expect(page.locator("#station-claim")).to_contain_text("paid")
    expect(page.locator("body")).to_contain_text("proof present")  # the issuer's proof
    page.screenshot(path="/tmp/payout-e2e-payout.png", full_page=True)
    assert errors == []
    page.context.close()
