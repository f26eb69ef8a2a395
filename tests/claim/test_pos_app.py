"""The POS endpoint's contract, through the real app on loopback: arm, read, follow the event
stream, cancel, hand over a PIN, the bearer token, and 4xx (never 500) for bad input."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import httpx
import pytest

from station.claim import charge as states
from station.claim.charge import ChargeRegistry
from station.pos.app import create_pos_app
from station.serve import serve_in_thread


@pytest.fixture
def pos() -> Iterator[tuple[str, ChargeRegistry]]:
    registry = ChargeRegistry()
    url, stop = serve_in_thread(create_pos_app(registry, readers=["emulated:*"]))
    yield url, registry
    stop()


def test_arm_get_cancel(pos: tuple[str, ChargeRegistry]) -> None:
    url, _ = pos
    with httpx.Client(base_url=url) as http:
        made = http.post("/charges", json={"amount_sats": 2100, "memo": "Coffee"})
        assert made.status_code == 201
        charge = made.json()
        assert charge["state"] == "armed" and charge["amount_msat"] == 2_100_000
        assert http.post("/charges", json={"amount_sats": 5}).status_code == 409
        assert http.get(f"/charges/{charge['id']}").json()["memo"] == "Coffee"
        gone = http.delete(f"/charges/{charge['id']}")
        assert gone.status_code == 200 and gone.json()["state"] == "cancelled"
        assert http.delete(f"/charges/{charge['id']}").status_code == 409
        assert http.get("/charges/" + "0" * 32).status_code == 404
        assert http.get("/charges/not-an-id").status_code == 404


@pytest.mark.parametrize("body", [
    {"amount_sats": 0}, {"amount_sats": -5}, {"amount_sats": "100"}, {"amount_sats": 1.5},
    {"amount_sats": 10, "memo": "x" * 201}, {"amount_sats": 10, "memo": "a\x00b"},
    {"amount_sats": 10, "reader": "pcsc:nope"}, {"amount_sats": 10, "timeout": 0},
    {"amount_sats": 10, "extra": 1}, {}, [], "text",
])
def test_bad_bodies_are_4xx(pos: tuple[str, ChargeRegistry], body: object) -> None:
    url, _ = pos
    got = httpx.post(f"{url}/charges", json=body)
    assert got.status_code == 422, got.text


def test_oversized_body_is_413(pos: tuple[str, ChargeRegistry]) -> None:
    url, _ = pos
    got = httpx.post(f"{url}/charges", content=b"{" + b" " * 10_000 + b"}",
                     headers={"content-type": "application/json"})
    assert got.status_code == 413


def test_event_stream_follows_the_charge_to_its_end(pos: tuple[str, ChargeRegistry]) -> None:
    url, registry = pos
    charge = registry.arm(2100)
    events: list[tuple[str, dict[str, object]]] = []

    def listen() -> None:
        with httpx.stream("GET", f"{url}/charges/{charge.id}/events", timeout=10) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            kind = None
            for line in resp.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind:
                    events.append((kind, json.loads(line[6:])))

    t = threading.Thread(target=listen)
    t.start()
    taken = registry.take("emulated:*")
    assert taken is charge
    charge.emit("tapped", uid="04A1B2C3D4E5F6")
    charge.set_state(states.PAID)
    charge.emit("outcome", **charge.public())
    t.join(10)
    assert not t.is_alive(), "the stream must end once the charge is final"
    assert [k for k, _ in events] == ["armed", "tapped", "state", "outcome"]
    assert events[-1][1]["state"] == "paid"


def test_pin_only_when_asked_and_well_formed(pos: tuple[str, ChargeRegistry]) -> None:
    url, registry = pos
    charge = registry.arm(2100)
    assert httpx.post(f"{url}/charges/{charge.id}/pin", json={"pin": "1234"}).status_code == 409
    charge.emit("pin_required", attempt=1, tries=3)
    assert httpx.post(f"{url}/charges/{charge.id}/pin", json={"pin": "12a4"}).status_code == 422
    assert httpx.post(f"{url}/charges/{charge.id}/pin", json={"pin": "1234"}).status_code == 202
    assert charge.take_pin(1) == "1234"


def test_token_guards_every_charge_route() -> None:
    registry = ChargeRegistry()
    url, stop = serve_in_thread(create_pos_app(registry, token="s3cret-token"))
    try:
        assert httpx.post(f"{url}/charges", json={"amount_sats": 1}).status_code == 401
        bad = {"Authorization": "Bearer nope"}
        assert httpx.post(f"{url}/charges", json={"amount_sats": 1}, headers=bad).status_code == 401
        good = {"Authorization": "Bearer s3cret-token"}
        made = httpx.post(f"{url}/charges", json={"amount_sats": 1}, headers=good)
        assert made.status_code == 201
        assert httpx.get(f"{url}/charges/{made.json()['id']}").status_code == 401
        page = httpx.get(f"{url}/")
        assert page.status_code == 200 and "s3cret" not in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
    finally:
        stop()


def test_page_and_assets_are_served_from_the_package(pos: tuple[str, ChargeRegistry]) -> None:
    url, _ = pos
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and 'id="charge"' in page.text
    assert "http://" not in page.text.replace(url, "") and "https://" not in page.text
    assert httpx.get(f"{url}/pos.js").headers["content-type"].startswith("text/javascript")
    assert httpx.get(f"{url}/pos.css").status_code == 200
