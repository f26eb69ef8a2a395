"""Which answers kill a record and which are retried in order (HttpUplink + the real outbox
and forwarder; the tracker's answers as exact response shapes over ``httpx.MockTransport``)."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import httpx
import pytest

from station.outbox.forwarder import Forwarder
from station.outbox.outbox import Outbox
from station.uplink.base import DELIVERED, REJECTED, UplinkUnavailable
from station.uplink.http import HttpUplink
from station.uplink.records import TapRecord


def tap(counter: int) -> TapRecord:
    return TapRecord(
        idempotency_key=f"04AABBCCDDEE01:{counter}", card_uid="04AABBCCDDEE01", card_id=None,
        counter=counter, station_time="2026-01-01T00:00:00+00:00", outcome="accepted",
        reason=None, issuer_host="pay.example.com",
    )


def answering(code: int, body: object, headers: dict[str, str] | None = None) -> HttpUplink:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(code, json=body, headers=headers)

    client = httpx.Client(base_url="http://tracker.test", transport=httpx.MockTransport(handler))
    return HttpUplink(client, "tok")


@pytest.mark.parametrize("code", [400, 404, 405, 410, 413, 415, 422])
def test_any_other_4xx_is_final_and_named(code: int) -> None:
    body = {"detail": {"reason": "body_too_large", "message": "send at most 1048576 bytes"}}
    delivery = answering(code, body).send(tap(1))
    assert delivery.state == REJECTED and delivery.status == code
    assert delivery.detail == "body_too_large: send at most 1048576 bytes"


@pytest.mark.parametrize("code", [401, 408, 429, 500, 502, 503, 504])
def test_transient_answers_are_retried(code: int) -> None:
    with pytest.raises(UplinkUnavailable):
        answering(code, {"detail": "later"}).send(tap(1))


def test_a_422_reason_names_the_field_without_echoing_the_input() -> None:
    body = {"detail": [{"field": "issuer_host", "reason": "control characters are not allowed",
                        "type": "value_error"}]}
    delivery = answering(422, body).send(tap(1))
    assert delivery.detail == "issuer_host: control characters are not allowed"


def test_retry_after_is_honoured_and_order_kept(tmp_path: Path) -> None:
    seen: list[tuple[float, int]] = []
    busy = {"left": 2}

    def handler(request: httpx.Request) -> httpx.Response:
        import json

        counter = json.loads(request.content)["counter"]
        seen.append((time.monotonic(), counter))
        if busy["left"]:
            busy["left"] -= 1
            return httpx.Response(503, headers={"Retry-After": "1"},
                                  json={"detail": {"reason": "database_busy"}})
        return httpx.Response(201, json={"tap": {}, "created": True})

    client = httpx.Client(base_url="http://tracker.test", transport=httpx.MockTransport(handler))
    box = Outbox(tmp_path / "o.sqlite")
    for n in (1, 2, 3):
        box.append(tap(n))
    # One record per request, so the handler sees each record's own retries (batches are
    # tested below).
    fwd = Forwarder(box, HttpUplink(client, "tok"), backoff_initial=0.01, backoff_max=0.05,
                    batch_size=1)
    fwd.start()
    assert fwd.flush(10)
    fwd.stop()
    assert [c for _, c in seen] == [1, 1, 1, 2, 3]  # the busy record first, again, in order
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(seen)][:2]
    assert min(gaps) >= 0.9  # waited the tracker's Retry-After, not the 10 ms backoff
    assert box.counts() == {DELIVERED: 3}


def test_batches_hold_consecutive_taps_only_so_order_across_kinds_holds(tmp_path: Path) -> None:
    import json

    from station.uplink.records import ClaimRecord

    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if request.url.path == "/api/v1/taps/batch":
            seen.append("batch:" + ",".join(str(t["counter"]) for t in body["taps"]))
            results = [{"status": 201, "created": True, "tap_id": 1} for _ in body["taps"]]
            return httpx.Response(200, json={"results": results, "complete": True})
        seen.append("claim" if "claim_id" in body else f"tap:{body['counter']}")
        return httpx.Response(201, json={"created": True})

    client = httpx.Client(base_url="http://tracker.test", transport=httpx.MockTransport(handler))
    box = Outbox(tmp_path / "o.sqlite")
    for n in (1, 2, 3):
        box.append(tap(n))
    box.append(ClaimRecord(
        claim_id="a" * 32, tap_key="04AABBCCDDEE01:3", state="sending", amount_msat=1000,
        memo=None, bolt11=None, payment_hash=None, issuer_host="pay.example.com", k1_hash=None,
        reason=None, station_time="2026-01-01T00:00:00+00:00"))
    box.append(tap(4))
    box.append(tap(5))
    fwd = Forwarder(box, HttpUplink(client, "tok"), backoff_initial=0.01)
    fwd.start()
    assert fwd.flush(10)
    fwd.stop()
    assert seen == ["batch:1,2,3", "claim", "batch:4,5"]
    assert box.counts() == {DELIVERED: 6}


def test_a_tracker_without_the_batch_route_gets_records_one_by_one(tmp_path: Path) -> None:
    import json

    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/taps/batch":
            seen.append("batch")
            return httpx.Response(404, json={"detail": "Not Found"})
        seen.append(str(json.loads(request.content)["counter"]))
        return httpx.Response(201, json={"created": True})

    client = httpx.Client(base_url="http://tracker.test", transport=httpx.MockTransport(handler))
    box = Outbox(tmp_path / "o.sqlite")
    for n in (1, 2, 3):
        box.append(tap(n))
    fwd = Forwarder(box, HttpUplink(client, "tok"), backoff_initial=0.01)
    fwd.start()
    assert fwd.flush(10)
    fwd.stop()
    assert seen == ["batch", "1", "2", "3"]
