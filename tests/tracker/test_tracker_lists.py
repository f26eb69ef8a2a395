"""Filters, keyset pagination and streamed exports, checked against independent SQL."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from tracker_testlib import OperatorClient

from tracker.models import Card, Payout, Station, Tap

STATES = ["Completed", "AwaitingApproval", "AwaitingPayment", "InProgress", "Cancelled", "Failed"]
BASE = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
N_TAPS = 150
NAMES = ("north", "south", "east")
UIDS = [f"04{n:012X}" for n in (0x10, 0x20, 0x30, 0x40, 0x50)]


@pytest.fixture
def seeded(engine: Engine) -> Engine:
    """5 cards, 3 stations, 150 taps and 100 payouts; timestamps repeat in threes so keyset
    pagination has to break ties on id."""
    stations = [{"id": i, "name": n, "created": BASE} for i, n in enumerate(NAMES, start=1)]
    cards = [
        {
            "id": i,
            "uid": uid,
            "alias": "=SUM(A1)" if i == 1 else f"card {i}",
            "status": "active",
            "last_counter": 1000,
            "first_seen": BASE,
            "last_seen": BASE,
        }
        for i, uid in enumerate(UIDS, start=1)
    ]
    taps = [
        {
            "id": i,
            "card_pk": i % 5 + 1,
            "station_pk": i % 3 + 1,
            "counter": i,
            "station_time": BASE + timedelta(minutes=i // 3),
            "received_at": BASE + timedelta(minutes=i // 3),
            "outcome": "refused" if i % 4 == 0 else "accepted",
            "reason": "bad CMAC" if i % 4 == 0 else None,
            "issuer_host": "pay.example.com",
            "idempotency_key": f"key-{i}",
        }
        for i in range(1, N_TAPS + 1)
    ]
    payouts = [
        {
            "id": i,
            "tap_pk": i,
            "card_pk": i % 5 + 1,
            "station_pk": i % 3 + 1,
            "amount_msat": (i * 137) % 5000 * 1000 + 999,
            "payment_hash": f"{i:064x}",
            "state": STATES[i % len(STATES)],
            "created": BASE + timedelta(minutes=i // 3),
            "updated": BASE + timedelta(minutes=i // 3),
            "bolt11": f"lnbc{i}n1pinvoice{i}",
        }
        for i in range(1, 101)
    ]
    # Through the mapped tables, so timestamps are stored exactly as the app stores them.
    with engine.begin() as conn:
        conn.execute(sa.insert(Station), stations)
        conn.execute(sa.insert(Card), cards)
        conn.execute(sa.insert(Tap), taps)
        conn.execute(sa.insert(Payout), payouts)
    return engine


def _ids(engine: Engine, sql: str, **params: Any) -> list[int]:
    with engine.connect() as conn:
        return [int(r[0]) for r in conn.execute(sa.text(sql), params)]


def _walk(client: Any, path: str, params: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        query = {**params, "limit": limit}
        if cursor:
            query["cursor"] = cursor
        page = client.get(path, params=query)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["items"]) <= limit
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("pagination did not end")


def _sqlite_time(engine: Engine, moment: datetime) -> Any:
    """A bind value for raw SQL: SQLite stores UTC text as ``YYYY-MM-DD HH:MM:SS.ffffff``."""
    if engine.dialect.name == "sqlite":
        return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return moment


PAYOUT_CASES = [
    ({}, "1=1", {}),
    ({"state": "Completed"}, "p.state = 'Completed'", {}),
    ({"station": "south"}, "s.name = 'south'", {}),
    ({"card": UIDS[2].lower()}, "c.uid = :uid", {"uid": UIDS[2]}),
    (
        {"min_sats": 1000, "max_sats": 3000},
        "p.amount_msat >= 1000000 AND p.amount_msat < 3001000",
        {},
    ),
    ({"q": "invoice7"}, "p.bolt11 LIKE '%invoice7%'", {}),
    (
        {"since": "2026-05-01T12:10:00+00:00", "until": "2026-05-01T12:20:00+00:00"},
        "p.created >= :a AND p.created < :b",
        {"a": BASE + timedelta(minutes=10), "b": BASE + timedelta(minutes=20)},
    ),
    (
        {"state": "Failed", "station": "north", "min_sats": 10},
        "p.state = 'Failed' AND s.name = 'north' AND p.amount_msat >= 10000",
        {},
    ),
]


@pytest.mark.parametrize(("params", "where", "sql_params"), PAYOUT_CASES)
def test_payout_filters_and_pages_match_sql(
    seeded: Engine,
    viewer_client: OperatorClient,
    params: dict[str, Any],
    where: str,
    sql_params: dict[str, Any],
) -> None:
    sql_params = {
        k: _sqlite_time(seeded, v) if isinstance(v, datetime) else v for k, v in sql_params.items()
    }
    expected = _ids(
        seeded,
        "SELECT p.id FROM payout p JOIN card c ON c.id = p.card_pk "
        f"JOIN station s ON s.id = p.station_pk WHERE {where} ORDER BY p.created DESC, p.id DESC",
        **sql_params,
    )
    got = _walk(viewer_client.client, "/api/v1/payouts", params, limit=7)
    ids = [p["id"] for p in got]
    assert ids == expected  # same rows, same order: no duplicates, no gaps
    if expected:
        assert len(set(ids)) == len(ids)


TAP_CASES = [
    ({}, "1=1"),
    ({"outcome": "refused"}, "t.outcome = 'refused'"),
    ({"station": "east", "outcome": "accepted"}, "s.name = 'east' AND t.outcome = 'accepted'"),
    ({"card": UIDS[0]}, f"c.uid = '{UIDS[0]}'"),
    ({"q": "SUM(A"}, "c.alias = '=SUM(A1)'"),
]


@pytest.mark.parametrize(("params", "where"), TAP_CASES)
def test_tap_filters_pages_and_exports_match_sql(
    seeded: Engine, viewer_client: OperatorClient, params: dict[str, Any], where: str
) -> None:
    expected = _ids(
        seeded,
        "SELECT t.id FROM tap t JOIN card c ON c.id = t.card_pk "
        f"JOIN station s ON s.id = t.station_pk WHERE {where} "
        "ORDER BY t.received_at DESC, t.id DESC",
    )
    client = viewer_client.client
    assert [t["id"] for t in _walk(client, "/api/v1/taps", params, limit=11)] == expected

    exported = client.get("/api/v1/taps/export.csv", params=params)
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [int(r["id"]) for r in rows] == expected

    as_json = client.get("/api/v1/taps/export.json", params=params)
    assert [r["id"] for r in json.loads(as_json.text)] == expected


def test_payout_export_has_the_filtered_rows_and_defuses_formulas(
    seeded: Engine, viewer_client: OperatorClient
) -> None:
    params = {"card": UIDS[0], "state": "Completed"}
    expected = _ids(
        seeded,
        "SELECT p.id FROM payout p JOIN card c ON c.id = p.card_pk "
        "WHERE c.uid = :u AND p.state = 'Completed' ORDER BY p.created DESC, p.id DESC",
        u=UIDS[0],
    )
    assert expected
    answer = viewer_client.client.get("/api/v1/payouts/export.csv", params=params)
    assert 'filename="payouts.csv"' in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [int(r["id"]) for r in rows] == expected
    assert {r["card_alias"] for r in rows} == {"'=SUM(A1)"}
    with seeded.connect() as conn:
        total = conn.execute(
            sa.text("SELECT SUM(amount_msat) FROM payout WHERE card_pk = 1 AND state = 'Completed'")
        ).scalar_one()
    assert sum(int(r["amount_msat"]) for r in rows) == total
    as_json = json.loads(
        viewer_client.client.get("/api/v1/payouts/export.json", params=params).text
    )
    assert as_json[0]["card_alias"] == "=SUM(A1)"  # JSON is data, not a spreadsheet


def test_large_csv_export_streams_every_row(engine: Engine, viewer_client: OperatorClient) -> None:
    """More rows than one chunk, so the generator crosses several yield_per batches."""
    n = 2600
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO station (id, name, created) VALUES (1, 's', :c)"), {"c": BASE}
        )
        conn.execute(
            sa.text(
                "INSERT INTO card (id, uid, status, first_seen, last_seen) "
                "VALUES (1, '04AABBCCDDEEFF', 'active', :c, :c)"
            ),
            {"c": BASE},
        )
        conn.execute(
            sa.text(
                "INSERT INTO tap (card_pk, station_pk, counter, station_time, received_at, "
                "outcome, idempotency_key) VALUES (1, 1, :n, :t, :t, 'accepted', :k)"
            ),
            [{"n": i, "t": BASE.replace(tzinfo=None), "k": f"k{i}"} for i in range(n)],
        )
    with viewer_client.client.stream("GET", "/api/v1/taps/export.csv") as answer:
        chunks = list(answer.iter_text())
    text = "".join(chunks)
    with engine.connect() as conn:
        in_db = conn.execute(sa.text("SELECT COUNT(*) FROM tap")).scalar_one()
    assert text.count("\r\n") - 1 == in_db == n
    assert len({line.split(",")[0] for line in text.splitlines()[1:]}) == n


def test_bad_cursor_and_bad_filters_are_422(viewer_client: OperatorClient, engine: Engine) -> None:
    client = viewer_client.client
    assert client.get("/api/v1/payouts", params={"cursor": "garbage!"}).status_code == 422
    assert client.get("/api/v1/payouts", params={"state": "Paid"}).status_code == 422
    assert client.get("/api/v1/taps", params={"card": "xyz"}).status_code == 422
    assert client.get("/api/v1/taps", params={"since": "yesterday"}).status_code == 422
