"""The operator pages, driven through the real app as an operator would use them."""

from __future__ import annotations

import csv
import html
import io
import json
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import markupsafe
import pytest
from fastapi.testclient import TestClient
from tracker_testlib import OperatorClient, make_station, make_tap

from tracker.services import stats as stats_service

HTML = {"accept": "text/html"}
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

CARD_A = "04A1B2C3D4E5F6"
CARD_B = "04112233445566"
CARD_C = "04AABBCCDDEE80"


class Station:
    """Posts taps and claims through the JSON API with a station token, like a real one."""

    def __init__(self, client: TestClient, token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    def tap(self, uid: str, counter: int, **kw: Any) -> dict[str, Any]:
        answer = self.client.post(
            "/api/v1/taps", json=make_tap(uid, counter, **kw), headers=self.headers
        )
        assert answer.status_code in (200, 201), answer.text
        return answer.json()["tap"]  # type: ignore[no-any-return]

    def payout(self, uid: str, counter: int, sats: int, state: str, **kw: Any) -> dict[str, Any]:
        self.tap(uid, counter)
        body = {
            "tap_idempotency_key": f"{uid}:{counter}",
            "amount_msat": sats * 1000,
            "state": state,
            **kw,
        }
        answer = self.client.post("/api/v1/payouts", json=body, headers=self.headers)
        assert answer.status_code == 201, answer.text
        return answer.json()["payout"]  # type: ignore[no-any-return]


@pytest.fixture
def station_api(admin_client: OperatorClient, station_token: str) -> Station:
    return Station(admin_client.client, station_token)


def _stat(page: str, key: str) -> int:
    match = re.search(rf'data-stat="{key}"[^>]*>([^<]*)<', page)
    assert match, key
    return int(re.sub(r"\D", "", match.group(1)) or "0")


def _row_ids(page: str, table_class: str) -> list[int]:
    match = re.search(rf'<table[^>]*class="{table_class}".*?</table>', page, re.S)
    assert match, table_class
    return [int(i) for i in re.findall(r'<tr data-id="(\d+)"', match.group(0))]


def _link(page: str, attr: str) -> str:
    match = re.search(rf'<a[^>]*{attr}[^>]*href="([^"]+)"|<a[^>]*href="([^"]+)"[^>]*{attr}', page)
    assert match, attr
    return html.unescape(match.group(1) or match.group(2))


# --- dashboard ---------------------------------------------------------------------------------


def test_dashboard_summary_matches_what_the_stations_reported(
    admin_client: OperatorClient, station_api: Station
) -> None:
    posted = [
        (CARD_A, 1, 1000, "Completed"),
        (CARD_A, 2, 2500, "Completed"),
        (CARD_B, 1, 700, "AwaitingPayment"),
        (CARD_B, 2, 300, "Cancelled"),
        (CARD_C, 1, 50, "Failed"),
    ]
    for uid, counter, sats, state in posted:
        station_api.payout(uid, counter, sats, state)
    station_api.tap(CARD_C, 2, outcome="refused", reason="counter replay")

    page = admin_client.client.get("/?period=today", headers=HTML)
    assert page.status_code == 200
    text = page.text
    assert _stat(text, "total_payouts") == 5
    assert _stat(text, "pending_payouts") == 1
    assert _stat(text, "completed_payouts") == 2
    assert _stat(text, "failed_payouts") == 2
    # Paid, pending and failed amounts are separate figures, never added into one total.
    assert 'data-stat="total_amount_sats"' not in text
    assert _stat(text, "completed_amount_sats") == 3500
    assert _stat(text, "pending_amount_sats") == 700
    assert _stat(text, "failed_amount_sats") == 350
    assert _stat(text, "active_cards") == 3
    assert _stat(text, "taps_today") == 6
    # Three server-side charts, one of them with a bar per card that was paid out.
    assert text.count("<div class='chart-wide'><svg") == 3  # (and 3 redrawn for phones)
    assert "/cards/04A1B2C3D4E5F6" in text
    # Recent payouts: newest first, with station, amount, a state badge and a detail link.
    assert len(_row_ids(text, "payouts")) == 5
    assert "badge-ok" in text and "badge-bad" in text and "badge-pending" in text
    assert "till-1" in text
    assert re.search(r"2\u202f500", text)


def test_summary_json_feeds_the_live_counters(
    admin_client: OperatorClient, station_api: Station
) -> None:
    station_api.payout(CARD_A, 1, 1234, "Completed")
    stats = admin_client.client.get("/summary.json?period=all").json()
    assert stats["total_payouts"] == 1
    assert stats["total_amount_sats"] == 1234


@SQLITE_ONLY
def test_period_selection_limits_the_summary(
    admin_client: OperatorClient, station_api: Station, session: Any
) -> None:
    station_api.payout(CARD_A, 1, 1000, "Completed")
    # Move the payout 10 days back: it leaves "7 days" but stays in "30 days".
    from tracker.models import Payout

    payout = session.get(Payout, 1)
    payout.created = datetime.now(UTC) - timedelta(days=10)
    session.add(payout)
    session.commit()
    c = admin_client.client
    assert _stat(c.get("/?period=7d", headers=HTML).text, "total_payouts") == 0
    assert _stat(c.get("/?period=30d", headers=HTML).text, "total_payouts") == 1
    assert _stat(c.get("/?period=all", headers=HTML).text, "total_payouts") == 1


# --- escaping ----------------------------------------------------------------------------------


@SQLITE_ONLY
def test_user_controlled_text_is_escaped_on_every_page(
    admin_client: OperatorClient, engine: Any
) -> None:
    c = admin_client.client
    evil_station = make_station(engine, '<i id="st">x</i>')
    st = Station(c, evil_station.token)
    alias = '<script>alert("alias")</script>'
    notes = "<img src=x onerror=alert(1)>"
    reason = "<b id='reason'>boom</b>"
    host = '"><svg onload=alert(2)>'
    st.tap(CARD_A, 1, station=evil_station.name, issuer_host=host)
    st.tap(CARD_A, 2, outcome="refused", reason=reason, station=evil_station.name)
    payout = st.payout(CARD_A, 3, 10, "Failed", issuer_reason=reason, issuer_host=host)
    csrf = {"csrf_token": admin_client.csrf}
    c.post(f"/cards/{CARD_A}/alias", data={"alias": alias, **csrf})
    c.post(f"/cards/{CARD_A}/notes", data={"notes": notes, **csrf})

    pages = [
        "/?period=all",
        "/cards",
        f"/cards/{CARD_A}",
        "/taps",
        "/payouts",
        f"/payouts/{payout['id']}",
        "/stations",
        f"/cards?q={alias}",
    ]
    for path in pages:
        text = c.get(path, headers=HTML).text
        for raw in (alias, notes, reason, host, evil_station.name):
            assert raw not in text, (path, raw)
    card_page = c.get(f"/cards/{CARD_A}", headers=HTML).text
    assert str(markupsafe.escape(alias)) in card_page  # &lt;script&gt;alert(&#34;alias&#34;)…
    assert "&lt;img src=x onerror=alert(1)&gt;" in card_page
    detail = c.get(f"/payouts/{payout['id']}", headers=HTML).text
    assert "&lt;b id=" in detail


def test_pages_forbid_inline_scripts(admin_client: OperatorClient) -> None:
    answer = admin_client.client.get("/", headers=HTML)
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "<script>" not in answer.text  # only <script src=...>


# --- payouts: filters, pagination, export ------------------------------------------------------


def test_payout_filters_and_their_export_agree(
    admin_client: OperatorClient, station_api: Station
) -> None:
    station_api.payout(CARD_A, 1, 1000, "Completed")
    station_api.payout(CARD_A, 2, 2000, "Completed")
    station_api.payout(CARD_B, 1, 3000, "Completed")
    station_api.payout(CARD_B, 2, 5000, "Cancelled")
    station_api.payout(CARD_A, 3, 9000, "Completed")
    c = admin_client.client
    page = c.get("/payouts?state=Completed&min_sats=1500&max_sats=5000", headers=HTML)
    assert page.status_code == 200
    shown = _row_ids(page.text, "payouts")
    expected = [
        p["id"]
        for p in c.get("/api/v1/payouts?limit=100").json()["items"]
        if p["state"] == "Completed" and 1_500_000 <= p["amount_msat"] <= 5_000_000
    ]
    assert sorted(shown) == sorted(expected)
    assert len(shown) == 2

    export = c.get(_link(page.text, 'data-export="csv"'))
    assert export.status_code == 200
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert sorted(int(r["id"]) for r in rows) == sorted(shown)
    exported_json = c.get(_link(page.text, 'data-export="json"'))
    body = exported_json.json()
    items = body if isinstance(body, list) else body.get("items", body)
    assert sorted(int(r["id"]) for r in items) == sorted(shown)

    by_card = c.get(f"/payouts?card={CARD_B.lower()}", headers=HTML)
    assert len(_row_ids(by_card.text, "payouts")) == 2
    by_text = c.get("/payouts?q=04a1b2", headers=HTML)
    assert len(_row_ids(by_text.text, "payouts")) == 3


@SQLITE_ONLY
def test_the_until_day_is_included_and_exported_the_same_way(
    admin_client: OperatorClient, station_api: Station
) -> None:
    station_api.payout(CARD_A, 1, 100, "Completed")
    today = datetime.now(UTC).date()
    yesterday = today - timedelta(days=1)
    c = admin_client.client
    same_day = c.get(f"/payouts?since={today}&until={today}", headers=HTML)
    assert len(_row_ids(same_day.text, "payouts")) == 1
    csv_link = _link(same_day.text, 'data-export="csv"')
    assert f"until={today + timedelta(days=1)}T00" in csv_link
    assert len(list(csv.DictReader(io.StringIO(c.get(csv_link).text)))) == 1
    before = c.get(f"/payouts?until={yesterday}", headers=HTML)
    assert _row_ids(before.text, "payouts") == []


@SQLITE_ONLY
def test_bad_filter_values_explain_themselves(admin_client: OperatorClient) -> None:
    page = admin_client.client.get("/payouts?since=last-tuesday&min_sats=-3&card=zz", headers=HTML)
    assert page.status_code == 400
    assert "must be a date" in page.text
    assert "non-negative" in page.text
    assert "Card must be a UID" in page.text
    assert "last-tuesday" in page.text  # the form keeps what was typed


@SQLITE_ONLY
def test_taps_list_pages_through_every_tap_once(
    admin_client: OperatorClient, station_api: Station
) -> None:
    for counter in range(1, 61):
        station_api.tap(CARD_A, counter)
    c = admin_client.client
    first = c.get("/taps", headers=HTML)
    first_ids = _row_ids(first.text, "taps")
    assert len(first_ids) == 50
    second = c.get(_link(first.text, 'rel="next"'), headers=HTML)
    second_ids = _row_ids(second.text, "taps")
    assert len(second_ids) == 10
    assert set(first_ids).isdisjoint(second_ids)
    assert first_ids == sorted(first_ids, reverse=True)
    assert 'rel="next"' not in second.text


@SQLITE_ONLY
def test_tap_filters_and_csv_export(admin_client: OperatorClient, station_api: Station) -> None:
    station_api.tap(CARD_A, 1)
    station_api.tap(CARD_A, 2, outcome="refused", reason="bad CMAC")
    station_api.tap(CARD_B, 1, outcome="refused", reason="unknown card")
    c = admin_client.client
    page = c.get(f"/taps?outcome=refused&card={CARD_A}", headers=HTML)
    assert len(_row_ids(page.text, "taps")) == 1
    rows = list(csv.DictReader(io.StringIO(c.get(_link(page.text, 'data-export="csv"')).text)))
    assert [(r["card_uid"], r["outcome"], r["reason"]) for r in rows] == [
        (CARD_A, "refused", "bad CMAC")
    ]


# --- detail pages ------------------------------------------------------------------------------


@SQLITE_ONLY
def test_payout_detail_shows_tap_claim_proof_and_history(
    admin_client: OperatorClient, station_api: Station
) -> None:
    payout = station_api.payout(
        CARD_A,
        7,
        2100,
        "AwaitingPayment",
        issuer_payout_id="PAYOUT-XYZ",
        bolt11="lnbc21u1pexample",
        issuer_host="pay.example.com",
        payment_hash="ab" * 32,
    )
    update = {"state": "Completed", "proof": {"preimage": "cd" * 32}}
    answer = admin_client.client.patch(
        f"/api/v1/payouts/{payout['id']}", json=update, headers=station_api.headers
    )
    assert answer.status_code == 200, answer.text
    page = admin_client.client.get(f"/payouts/{payout['id']}", headers=HTML).text
    assert "PAYOUT-XYZ" in page
    assert "lnbc21u1pexample" in page
    assert "ab" * 32 in page
    assert "proof present" in page
    assert "cd" * 32 not in page  # a preimage is a secret: never shown
    assert re.search(r"<dt>Counter</dt><dd>7</dd>", page)
    history = page.split("State history", 1)[1]
    assert history.index("AwaitingPayment") < history.index("Completed")
    assert "station" in history


@SQLITE_ONLY
def test_missing_things_get_friendly_404_pages(admin_client: OperatorClient) -> None:
    c = admin_client.client
    for path in ("/payouts/999", "/cards/04FFFFFFFFFFFF", "/cards/not-a-uid", "/no/such/page"):
        answer = c.get(path, headers=HTML)
        assert answer.status_code == 404, path
        assert "text/html" in answer.headers["content-type"]
        assert "Back to the dashboard" in answer.text
    api = c.get("/api/v1/payouts/999")
    assert api.status_code == 404
    assert api.headers["content-type"].startswith("application/json")


@SQLITE_ONLY
def test_unexpected_errors_show_a_reference_that_is_in_the_log(
    admin_client: OperatorClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("database exploded: secret detail")

    monkeypatch.setattr(stats_service, "dashboard_stats", broken)
    with caplog.at_level(logging.ERROR):
        answer = admin_client.client.get("/", headers=HTML)
    assert answer.status_code == 500
    assert "secret detail" not in answer.text
    ref = re.search(r"Reference: <code>([0-9a-f]+)</code>", answer.text)
    assert ref
    assert any(ref.group(1) in r.getMessage() for r in caplog.records)


@SQLITE_ONLY
def test_card_page_shows_totals_stations_and_flags_counter_gaps(
    admin_client: OperatorClient, station_api: Station, engine: Any
) -> None:
    station_api.payout(CARD_A, 1, 1000, "Completed")
    station_api.tap(CARD_A, 2)
    other = Station(admin_client.client, make_station(engine, "kiosk-2").token)
    other.payout(
        CARD_A,
        6,
        500,
        "Completed",
    )
    station_api.tap(CARD_A, 7, outcome="refused", reason="replay")
    page = admin_client.client.get(f"/cards/{CARD_A.lower()}", headers=HTML)
    assert page.status_code == 200
    text = page.text
    assert "kiosk-2, till-1" in text  # stations used
    assert re.search(r"<span class=\"gap\">3–5</span>", text)  # 3, 4, 5 never seen
    assert "⚠ gap 3" in text  # flagged on the tap with counter 6
    assert re.search(r"1\u202f500 sats", text)  # completed total
    assert len(_row_ids(text, "taps")) == 4
    assert len(_row_ids(text, "payouts")) == 2


# --- admin actions -----------------------------------------------------------------------------


@SQLITE_ONLY
def test_admin_renames_blocks_unblocks_and_notes_a_card(
    admin_client: OperatorClient, station_api: Station
) -> None:
    station_api.tap(CARD_A, 1)
    c = admin_client.client
    csrf = {"csrf_token": admin_client.csrf}
    renamed = c.post(
        f"/cards/{CARD_A}/alias", data={"alias": "  Alice's card ", **csrf}, follow_redirects=False
    )
    assert renamed.status_code == 303
    assert renamed.headers["location"].startswith(f"/cards/{CARD_A}")
    page = c.get(renamed.headers["location"], headers=HTML).text
    assert "Alias saved." in page
    assert "Alice&#39;s card" in page
    assert "Alice&#39;s card" in c.get("/cards?q=alice", headers=HTML).text

    # The block button leads to a confirm page; posting without a reason is refused.
    confirm = c.get(f"/cards/{CARD_A}/block", headers=HTML)
    assert confirm.status_code == 200 and 'name="reason"' in confirm.text
    no_reason = c.post(f"/cards/{CARD_A}/status", data={"status": "blocked", **csrf})
    assert no_reason.status_code == 400 and "reason" in no_reason.text
    assert c.get(f"/api/v1/cards/{CARD_A}/status").json()["status"] == "active"
    c.post(f"/cards/{CARD_A}/status", data={"status": "blocked", "reason": "lost", **csrf})
    assert c.get(f"/api/v1/cards/{CARD_A}/status").json()["status"] == "blocked"
    refused = c.post("/api/v1/taps", json=make_tap(CARD_A, 2), headers=station_api.headers)
    assert refused.status_code == 403
    page = c.get(f"/cards/{CARD_A}", headers=HTML).text
    assert "Unblock card" in page
    assert "Blocked by <strong>admin</strong>" in page and ": lost." in page

    c.post(f"/cards/{CARD_A}/status", data={"status": "active", "reason": "found", **csrf})
    assert c.get(f"/api/v1/cards/{CARD_A}/status").json()["status"] == "active"
    wipe = {"status": "wiped", "reason": "x", **csrf}
    assert c.post(f"/cards/{CARD_A}/status", data=wipe).status_code == 400

    c.post(f"/cards/{CARD_A}/notes", data={"notes": "lost once, found at till 2", **csrf})
    assert "lost once, found at till 2" in c.get(f"/cards/{CARD_A}", headers=HTML).text


@SQLITE_ONLY
def test_cards_list_searches_alias_and_uid(
    admin_client: OperatorClient, station_api: Station
) -> None:
    station_api.tap(CARD_A, 1)
    station_api.tap(CARD_B, 1)
    c = admin_client.client
    c.post(f"/cards/{CARD_B}/alias", data={"alias": "Bob", "csrf_token": admin_client.csrf})
    assert "2 cards" in c.get("/cards", headers=HTML).text
    by_alias = c.get("/cards?q=bob", headers=HTML).text
    assert "1 card<" in by_alias and CARD_B in by_alias and CARD_A not in by_alias
    by_uid = c.get("/cards?q=a1b2", headers=HTML).text
    assert CARD_A in by_uid and CARD_B not in by_uid


@SQLITE_ONLY
def test_a_new_station_token_is_shown_once_and_works(admin_client: OperatorClient) -> None:
    c = admin_client.client
    answer = c.post("/stations", data={"name": "till-9", "csrf_token": admin_client.csrf})
    assert answer.status_code == 200
    token = re.search(r'<code id="new-token">([^<]+)</code>', answer.text)
    assert token
    posted = c.post(
        "/api/v1/taps",
        json=make_tap(CARD_A, 1, station="till-9"),
        headers={"Authorization": f"Bearer {token.group(1)}"},
    )
    assert posted.status_code == 201
    again = c.get("/stations", headers=HTML).text
    assert token.group(1) not in again
    assert "till-9" in again
    duplicate = c.post("/stations", data={"name": "till-9", "csrf_token": admin_client.csrf})
    assert duplicate.status_code == 409
    assert "already exists" in duplicate.text


@SQLITE_ONLY
def test_viewers_see_pages_but_no_admin_forms(
    viewer_client: OperatorClient, station_api: Station
) -> None:
    station_api.tap(CARD_A, 1)
    c = viewer_client.client
    for path in ("/", "/payouts", "/taps", "/cards", f"/cards/{CARD_A}", "/stations"):
        page = c.get(path, headers=HTML)
        assert page.status_code == 200, path
        assert 'action="/stations"' not in page.text
        assert "/alias" not in page.text
    denied = c.post("/stations", data={"name": "x", "csrf_token": viewer_client.csrf})
    assert denied.status_code == 403


def test_json_export_is_valid_json(admin_client: OperatorClient, station_api: Station) -> None:
    station_api.payout(CARD_A, 1, 1, "Completed")
    page = admin_client.client.get("/payouts", headers=HTML)
    body = admin_client.client.get(_link(page.text, 'data-export="json"')).text
    json.loads(body)
