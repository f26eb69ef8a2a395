"""Streamed CSV and JSON exports of exactly the filtered taps or payouts.

Rows are read with ``yield_per`` (a server-side cursor on PostgreSQL; SQLite steps its cursor
lazily anyway) and written out in chunks, so exporting a million taps keeps a few thousand rows
in memory at most. Each generator opens its own session and closes it when the stream ends or
the client goes away, because a request-scoped session may be closed before a streamed body
finishes.

CSV cells that a spreadsheet would run as a formula (starting with ``= + - @`` or a control
character) are prefixed with ``'``: aliases, notes and reasons come from users and issuers.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from tracker import words
from tracker.services import payouts as payout_service
from tracker.services import taps as tap_service
from tracker.services.filters import ListFilter

CHUNK_ROWS = 1000

TAP_FIELDS = (
    "id",
    "received_at",
    "station_time",
    "station",
    "card_uid",
    "card_id",
    "counter",
    "outcome",
    "reason",
    "reason_text",
    "verified",
    "trust_note",
    "issuer_host",
    "idempotency_key",
)
PAYOUT_FIELDS = (
    "id",
    "created",
    "updated",
    "state",
    "amount_sats",
    "amount_msat",
    "card_uid",
    "card_alias",
    "station",
    "tap_id",
    "payment_hash",
    "bolt11",
    "issuer_host",
    "issuer_payout_id",
    "pull_payment_id",
    "issuer_reason",
    "lnurl_k1",
)
#: Starts of a cell a spreadsheet may read as a formula: the ASCII prefixes, whitespace and
#: line breaks it skips before one, and the full-width forms (＝ ＋ － ＠) some apps fold.
_FORMULA_START = (
    "=", "+", "-", "@", "\t", "\r", "\n", " ",
    "\uff1d", "\uff0b", "\uff0d", "\uff20",
)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _tap_record(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "received_at": row.received_at,
        "station_time": row.station_time,
        "station": row.station,
        "card_uid": row.card_uid,
        "card_id": row.card_id,
        "counter": row.counter,
        "outcome": row.outcome,
        "reason": row.reason,
        "reason_text": words.reason_text(row.reason, counter=row.counter),
        "verified": bool(row.verified),
        "trust_note": words.trust_note(reason=row.reason, verified=bool(row.verified)),
        "issuer_host": row.issuer_host,
        "idempotency_key": row.idempotency_key,
    }


def _payout_record(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "created": row.created,
        "updated": row.updated,
        "state": row.state,
        "amount_sats": row.amount_msat // 1000,
        "amount_msat": row.amount_msat,
        "card_uid": row.card_uid,
        "card_alias": row.card_alias,
        "station": row.station,
        "tap_id": row.tap_pk,
        "payment_hash": row.payment_hash,
        "bolt11": row.bolt11,
        "issuer_host": row.issuer_host,
        "issuer_payout_id": row.issuer_payout_id,
        "pull_payment_id": row.pull_payment_id,
        "issuer_reason": row.issuer_reason,
        "lnurl_k1": row.lnurl_k1,
    }


def _rows(engine: Engine, stmt: Any) -> Iterator[Any]:
    with Session(engine) as session:
        result = session.execute(stmt.execution_options(yield_per=CHUNK_ROWS))
        try:
            yield from result
        finally:
            result.close()


def csv_rows(
    engine: Engine, stmt: Any, fields: tuple[str, ...], record: Callable[[Any], dict[str, Any]]
) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(fields)
    pending = 0
    for row in _rows(engine, stmt):
        rec = record(row)
        writer.writerow([_cell(rec[f]) for f in fields])
        pending += 1
        if pending >= CHUNK_ROWS:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    yield buffer.getvalue()


def json_rows(engine: Engine, stmt: Any, record: Callable[[Any], dict[str, Any]]) -> Iterator[str]:
    """A JSON array, one object per line (easy to diff and to stream-parse)."""
    parts: list[str] = ["["]
    first = True
    for row in _rows(engine, stmt):
        rec = {k: _json_value(v) for k, v in record(row).items()}
        parts.append(("\n" if first else ",\n") + json.dumps(rec, separators=(",", ":")))
        first = False
        if len(parts) >= CHUNK_ROWS:
            yield "".join(parts)
            parts = []
    parts.append("\n]\n")
    yield "".join(parts)


def taps_csv(engine: Engine, *, flt: ListFilter) -> Iterator[str]:
    return csv_rows(engine, tap_service.filtered_select(flt), TAP_FIELDS, _tap_record)


def taps_json(engine: Engine, *, flt: ListFilter) -> Iterator[str]:
    return json_rows(engine, tap_service.filtered_select(flt), _tap_record)


def payouts_csv(engine: Engine, *, flt: ListFilter) -> Iterator[str]:
    return csv_rows(engine, payout_service.filtered_select(flt), PAYOUT_FIELDS, _payout_record)


def payouts_json(engine: Engine, *, flt: ListFilter) -> Iterator[str]:
    return json_rows(engine, payout_service.filtered_select(flt), _payout_record)
