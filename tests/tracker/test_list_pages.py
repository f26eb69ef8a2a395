"""The lists as an operator meets them: short card names with the full UID at hand, empty
lists that say what to set up, and sortable columns that keep the filters, page through every
row once and reach the exports. Through the real app on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import csv
import html
import io
import random
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_pages import Station, station_api  # the JSON-API station and its fixture, re-used
from tracker_testlib import OperatorClient

HTML = {"accept": "text/html"}
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

__all__ = ["station_api"]  # the fixture, re-used

CARD_A = "04A1B2C3D4E5F6"  # shown as 04A1…E5F6
CARD_B = "04112233445566"  # shown as 0411…5566


def _table(page: str, table_class: str) -> str:
    match = re.search(rf'<table[^>]*class="{table_class}".*?</table>', page, re.S)
    assert match, table_class
    return match.group(0)


def _header_link(page: str, column: str) -> str:
    match = re.search(rf'<a class="sort[^"]*" href="([^"]+)" data-sort="{column}"', page)
    assert match, column
    return html.unescape(match.group(1))


def _row_ids(page: str, table_class: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-id="(\d+)"', _table(page, table_class))]


# --- card identity ------------------------------------------------------------------------------


def test_every_list_names_a_card_by_alias_else_short_uid_with_the_full_uid_at_hand(
    admin_client: OperatorClient, station_api: Station
) -> None:
    c = admin_client.client
    station_api.payout(CARD_A, 1, 1000, "Completed")
    station_api.payout(CARD_B, 1, 2000, "Completed")
    csrf = {"csrf_token": admin_client.csrf}
    assert c.post(f"/cards/{CARD_B}/alias", data={"alias": "Bob's card", **csrf}).status_code == 200

    for path in ("/?period=all", "/payouts", "/taps", "/cards"):
        page = c.get(path, headers=HTML).text
        # No alias: the short form, the full UID on hover and in the copy button.
        assert re.search(rf'title="{CARD_A}"[^>]*>04A1\u2026E5F6</a>', page), path
        assert f'data-copy="{CARD_A}"' in page, path
        # An alias replaces the UID in the list; the UID stays on hover and copy.
        assert re.search(rf'title="{CARD_B}"[^>]*>Bob&#39;s card</a>', page), path
        assert f'data-copy="{CARD_B}"' in page, path
        # The 14-hex UID is never a cell's visible text.
        assert f">{CARD_A}<" not in page.replace('<td class="mono opt">', ""), path

    # The API, the event stream and the page script read the same label from the model.
    taps = c.get("/api/v1/taps").json()["items"]
    assert {t["card_uid"]: t["card_label"] for t in taps} == {
        CARD_A: "04A1\u2026E5F6",
        CARD_B: "Bob's card",
    }
    payouts = c.get("/api/v1/payouts").json()["items"]
    assert {p["card_label"] for p in payouts} == {"04A1\u2026E5F6", "Bob's card"}
    cards = c.get("/api/v1/cards").json()["items"]
    assert {k["card_label"] for k in cards} == {"04A1\u2026E5F6", "Bob's card"}


@SQLITE_ONLY
def test_an_unverified_tap_never_wears_the_cards_alias(
    admin_client: OperatorClient, station_api: Station
) -> None:
    c = admin_client.client
    station_api.tap(CARD_A, 1)
    c.post(f"/cards/{CARD_A}/alias", data={"alias": "Alice", "csrf_token": admin_client.csrf})
    forged = station_api.tap(CARD_A, 2, outcome="refused", reason="invalid_tap")
    assert forged["card_label"] == "04A1\u2026E5F6"
    taps = _table(c.get("/taps", headers=HTML).text, "taps")
    assert "claims 04A1\u2026E5F6" in taps and taps.count(">Alice</a>") == 1
    tap_page = c.get(f"/taps/{forged['id']}", headers=HTML).text
    assert "claims 04A1\u2026E5F6" in tap_page and ">Alice<" not in tap_page


@SQLITE_ONLY
def test_copy_buttons_need_no_inline_script(
    admin_client: OperatorClient, station_api: Station
) -> None:
    station_api.payout(CARD_A, 1, 1000, "Completed")
    page = admin_client.client.get("/payouts", headers=HTML)
    assert '<script src="/static/copy.js" defer></script>' in page.text
    assert "onclick" not in page.text and "<script>" not in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert admin_client.client.get("/static/copy.js").status_code == 200


# --- empty states --------------------------------------------------------------------------------


def test_empty_lists_say_where_rows_come_from_and_what_to_run(
    admin_client: OperatorClient,
) -> None:
    c = admin_client.client
    payouts = c.get("/payouts", headers=HTML).text
    assert "No payouts yet." in payouts
    assert "tracker stations add till-1" in payouts
    assert "station run --config station.toml" in payouts
    assert "tracker issuers add shop --kind btcpay" in payouts
    assert "http://testserver/webhooks/btcpay/shop" in payouts  # this tracker's webhook URL
    assert 'href="/help#payouts"' in payouts

    taps = c.get("/taps", headers=HTML).text
    assert "No taps yet." in taps and "tracker stations add till-1" in taps
    assert 'href="/help#taps"' in taps
    cards = c.get("/cards", headers=HTML).text
    assert "No cards yet." in cards and "first time a station reports a tap" in cards
    assert 'href="/help#cards"' in cards
    stations = c.get("/stations", headers=HTML).text
    assert "No stations yet." in stations and "tracker stations add till-1" in stations
    dashboard = c.get("/", headers=HTML).text
    assert 'id="getting-started"' in dashboard and "tracker stations add till-1" in dashboard


def test_a_filter_that_hides_every_row_says_so_and_offers_the_way_out(
    admin_client: OperatorClient, station_api: Station
) -> None:
    c = admin_client.client
    station_api.payout(CARD_A, 1, 1000, "Completed")
    page = c.get("/payouts?min_sats=5000&sort=amount&dir=asc", headers=HTML).text
    assert "No payouts match these filters" in page
    assert "No payouts yet." not in page
    clear = re.search(r'<a href="([^"]+)" data-clear-filters>clear filters</a>', page)
    assert clear and html.unescape(clear.group(1)) == "/payouts?sort=amount&dir=asc"
    assert _row_ids(c.get(clear.group(1), headers=HTML).text, "payouts") == [1]

    taps = c.get(f"/taps?card={CARD_B}", headers=HTML).text
    assert "No taps match these filters" in taps
    cards = c.get("/cards?q=nobody", headers=HTML).text
    assert "No cards match these filters" in cards
    dashboard = c.get("/", headers=HTML).text
    assert 'id="getting-started"' not in dashboard


def test_help_is_served_by_the_tracker_and_links_nowhere_else(
    viewer_client: OperatorClient,
) -> None:
    page = viewer_client.client.get("/help", headers=HTML)
    assert page.status_code == 200
    for anchor in ("stations", "taps", "cards", "payouts", "lists"):
        assert f'id="{anchor}"' in page.text
    assert "tracker stations add till-1" in page.text
    assert not re.search(r'(href|src)="(https?:)?//', page.text)  # offline: nothing external


# --- sorting --------------------------------------------------------------------------------------


def _walk(c: TestClient, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of an API list, following next_cursor two at a time."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": 2, **({"cursor": cursor} if cursor else {})}
        answer = c.get(path, params=query)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            return items


def test_payouts_sort_by_amount_both_ways_through_every_page(
    admin_client: OperatorClient, station_api: Station
) -> None:
    c = admin_client.client
    posted = {}
    for counter, sats in enumerate([700, 50, 2500, 700, 1000, 50, 9000], start=1):
        posted[int(station_api.payout(CARD_A, counter, sats, "Completed")["id"])] = sats
    ascending = sorted(posted, key=lambda pid: (posted[pid], pid))

    items = _walk(c, "/api/v1/payouts", sort="amount", dir="asc")
    assert [p["id"] for p in items] == ascending
    items = _walk(c, "/api/v1/payouts", sort="amount", dir="desc")
    assert [p["id"] for p in items] == ascending[::-1]
    # The page shows the same order, and the export follows it.
    page = c.get("/payouts?sort=amount&dir=asc", headers=HTML).text
    assert _row_ids(page, "payouts") == ascending
    exported = list(csv.DictReader(io.StringIO(c.get(
        "/api/v1/payouts/export.csv", params={"sort": "amount", "dir": "asc"}).text)))
    assert [int(r["id"]) for r in exported] == ascending
    export_link = re.search(r'href="([^"]+)" data-export="csv"', page)
    assert export_link and "sort=amount" in html.unescape(export_link.group(1))


def test_taps_sort_by_counter_and_outcome(
    admin_client: OperatorClient, station_api: Station
) -> None:
    c = admin_client.client
    for uid, counter in ((CARD_A, 5), (CARD_B, 2), (CARD_A, 9), (CARD_B, 7)):
        station_api.tap(uid, counter)
    station_api.tap(CARD_B, 3, outcome="refused", reason="counter_not_increasing")
    counters = [t["counter"] for t in _walk(c, "/api/v1/taps", sort="counter", dir="asc")]
    assert counters == [2, 3, 5, 7, 9]
    counters = [t["counter"] for t in _walk(c, "/api/v1/taps", sort="counter")]
    assert counters == [9, 7, 5, 3, 2]  # a first click on a number: largest first
    outcomes = [t["outcome"] for t in _walk(c, "/api/v1/taps", sort="outcome", dir="asc")]
    assert outcomes == ["accepted"] * 4 + ["refused"]


def test_headers_link_to_the_sorted_list_keeping_filters_and_show_the_order(
    admin_client: OperatorClient, station_api: Station
) -> None:
    c = admin_client.client
    for counter, sats in enumerate([300, 100, 200], start=1):
        station_api.payout(CARD_A, counter, sats, "Completed")
    page = c.get("/payouts?station=till-1&min_sats=1", headers=HTML).text
    # Newest first by default: the time header carries the arrow.
    assert re.search(r'aria-sort="descending"><a class="sort current"[^>]*data-sort="time"', page)
    link = _header_link(page, "amount")
    assert "station=till-1" in link and "min_sats=1" in link and "sort=amount" in link
    assert "dir=desc" in link  # amounts start with the largest
    sorted_page = c.get(link, headers=HTML).text
    assert _row_ids(sorted_page, "payouts") == [1, 3, 2]
    assert '<span class="arrow" aria-hidden="true"> ▼</span>' in sorted_page
    # Clicking the current column again reverses it; the filter form keeps the order.
    again = _header_link(sorted_page, "amount")
    assert "dir=asc" in again
    assert _row_ids(c.get(again, headers=HTML).text, "payouts") == [2, 3, 1]
    assert '<input type="hidden" name="sort" value="amount">' in sorted_page
    # Card and station are not sortable (no index orders them): plain headers.
    assert 'data-sort="card"' not in page and 'data-sort="station"' not in page


def test_unknown_sort_values_are_refused_with_the_allowed_ones(
    admin_client: OperatorClient,
) -> None:
    c = admin_client.client
    answer = c.get("/api/v1/taps?sort=reason")
    assert answer.status_code == 422
    detail = answer.json()["detail"][0]
    assert detail["field"] == "sort" and detail["allowed"] == ["time", "counter", "outcome"]
    answer = c.get("/api/v1/payouts?sort=amount&dir=sideways")
    assert answer.status_code == 422
    assert c.get("/api/v1/cards?sort=holder").json()["detail"][0]["allowed"] == [
        "card", "uid", "status", "counter", "first_seen", "last_seen"]
    assert c.get("/api/v1/payouts/export.csv?sort=bolt11").status_code == 422

    page = c.get("/payouts?sort=bolt11", headers=HTML)
    assert page.status_code == 400
    allowed = "use one of: time, id, amount, state"
    assert f"Cannot sort payouts by &#39;bolt11&#39;; {allowed}" in page.text
    assert c.get("/cards?sort=notes", headers=HTML).status_code == 400
    assert c.get("/stations?sort=token", headers=HTML).status_code == 400


def test_a_cursor_from_another_order_is_refused_not_misread(
    admin_client: OperatorClient, station_api: Station
) -> None:
    c = admin_client.client
    for counter in range(1, 4):
        station_api.tap(CARD_A, counter)
    cursor = c.get("/api/v1/taps", params={"limit": 1}).json()["next_cursor"]
    answer = c.get("/api/v1/taps", params={"limit": 1, "sort": "outcome", "cursor": cursor})
    assert answer.status_code == 422 and answer.json()["detail"][0]["field"] == "cursor"
    # Edited cursors: wrong types, a NUL (PostgreSQL refuses it in text), nesting, floats.
    for raw in ('["acc\\u0000", 1, 2]', '[{"a": 1}, 1, 2]', '[1.5, 2]', '[[[[1]]], 1, 2]',
                '["accepted", -1, 2]', '["x" , 1]'):
        edited = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
        for sort in ("outcome", "counter", "time"):
            answer = c.get("/api/v1/taps", params={"sort": sort, "cursor": edited})
            assert answer.status_code == 422, (raw, sort, answer.text)
        page = c.get("/taps", params={"sort": "outcome", "cursor": edited}, headers=HTML)
        assert page.status_code == 400


def test_cards_and_stations_sort_by_their_columns(
    admin_client: OperatorClient, station_api: Station, engine: Any
) -> None:
    from tracker_testlib import make_station

    c = admin_client.client
    station_api.tap(CARD_A, 12)
    station_api.tap(CARD_B, 3)
    c.post(f"/cards/{CARD_A}/alias", data={"alias": "Zed", "csrf_token": admin_client.csrf})
    cards = c.get("/api/v1/cards", params={"sort": "counter", "dir": "asc"}).json()["items"]
    assert [k["uid"] for k in cards] == [CARD_B, CARD_A]
    page = c.get("/cards?sort=card&dir=asc", headers=HTML).text
    assert page.index("0411\u20265566") < page.index(">Zed<")  # "0411…" before "Zed"
    page = c.get("/cards?sort=card&dir=desc", headers=HTML).text
    assert page.index(">Zed<") < page.index("0411\u20265566")

    make_station(engine, "annex")
    make_station(engine, "zoo")
    names = re.findall(r'<a href="/taps\?station=([^"]+)">',
                       c.get("/stations?sort=name&dir=desc", headers=HTML).text)
    assert names == ["zoo", "till-1", "annex"]

    # By last heartbeat: the station that reported most recently first, never-reported last.
    from test_station_heartbeat import URL, beat

    zoo = make_station(engine, "zoo2")
    annex = make_station(engine, "annex2")
    for creds in (zoo, annex):  # annex2 reports last
        assert c.post(URL, json=beat(), headers=creds.headers).status_code == 200
    names = re.findall(r'<a href="/taps\?station=([^"]+)">',
                       c.get("/stations?sort=heartbeat", headers=HTML).text)
    assert names[:2] == ["annex2", "zoo2"] and set(names[2:]) == {"zoo", "till-1", "annex"}


@SQLITE_ONLY
def test_a_sorted_page_pages_on_in_the_same_order(
    admin_client: OperatorClient, station_api: Station
) -> None:
    c = admin_client.client
    counters = list(range(1, 56))
    random.Random(5).shuffle(counters)
    for n, counter in enumerate(counters):  # spread over cards so each counter is accepted
        station_api.tap(f"04A1B2C3D4E5{n:02X}", counter)
    first = c.get("/taps?sort=counter&dir=asc", headers=HTML).text
    seen = [int(x) for x in re.findall(r'<td class="num opt">(\d+)', _table(first, "taps"))]
    assert seen == list(range(1, 51))
    older = re.search(r'rel="next" href="([^"]+)">Next page →', first)
    assert older and "sort=counter" in html.unescape(older.group(1))
    second = c.get(html.unescape(older.group(1)), headers=HTML).text
    rest = [int(x) for x in re.findall(r'<td class="num opt">(\d+)', _table(second, "taps"))]
    assert rest == list(range(51, 56))
    assert 'rel="next"' not in second and "⇤ First page" in second
