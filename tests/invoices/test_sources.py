"""Each invoice source against a fake of its real API (exact shapes, real signed BOLT11).

What a merchant would notice: the invoice is for the amount asked; a paid invoice is reported
paid with a preimage that proves it; a source that lies about amount or hash is caught; a wrong
key, a dead server or a flood of bytes gives an error that says which setting to check and never
shows the key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import bolt11
import httpx
import pytest

from station.invoices import (
    InvoiceMismatch,
    InvoiceSource,
    InvoiceSourceRefused,
    InvoiceSourceUnavailable,
    make_source,
)

from .fakes import KEY, MACAROON, STORE, FakeNode

KINDS = ("btcpay", "lnbits", "lnd", "cln")
URL = "https://node.example:8443"


def build(node: FakeNode) -> tuple[InvoiceSource, httpx.Client]:
    http = httpx.Client(transport=node.transport())
    key = MACAROON if node.kind == "lnd" else KEY
    return make_source(node.kind, URL, key, STORE, http), http


@pytest.fixture(params=KINDS)
def node(request: pytest.FixtureRequest) -> FakeNode:
    return FakeNode(kind=request.param)


@pytest.fixture
def source(node: FakeNode) -> Iterator[InvoiceSource]:
    src, http = build(node)
    yield src
    http.close()


def secret_of(node: FakeNode) -> str:
    return MACAROON if node.kind == "lnd" else KEY


def test_create_returns_the_decoded_invoice_for_the_amount_asked(
    node: FakeNode, source: InvoiceSource
) -> None:
    invoice = source.create(21_000, "Coffee #42", 600)

    decoded = bolt11.decode(invoice.bolt11)
    assert decoded.amount_msat == 21_000 == invoice.amount_msat
    assert decoded.payment_hash == invoice.payment_hash
    assert decoded.description == "Coffee #42"
    assert invoice.payment_hash in node.made
    assert timedelta(seconds=590) < invoice.expires_at - datetime.now(UTC) <= timedelta(
        seconds=601
    )
    assert invoice.bolt11 not in repr(invoice)  # shortened, the hash is enough to identify it


def test_request_shapes_match_each_api(node: FakeNode, source: InvoiceSource) -> None:
    source.create(21_000, "Coffee", 600)
    request = node.requests[0]
    body = json.loads(request.content)
    if node.kind == "btcpay":
        assert request.url.path == f"/api/v1/stores/{STORE}/lightning/BTC/invoices"
        assert request.headers["authorization"] == f"token {KEY}"
        assert body["amount"] == "21000" and body["expiry"] == 600
        assert body["description"] == "Coffee"
    elif node.kind == "lnbits":
        assert request.url.path == "/api/v1/payments"
        assert request.headers["x-api-key"] == KEY
        assert body == {"out": False, "amount": 21, "unit": "sat", "memo": "Coffee", "expiry": 600}
    elif node.kind == "lnd":
        assert request.url.path == "/v1/invoices"
        assert request.headers["grpc-metadata-macaroon"] == MACAROON
        assert body == {"value_msat": "21000", "memo": "Coffee", "expiry": "600"}
    else:
        assert request.url.path == "/v1/invoice"
        assert request.headers["rune"] == KEY
        assert body["amount_msat"] == 21_000 and body["expiry"] == 600
        assert body["label"].startswith("station-") and len(body["label"]) == 8 + 32


def test_cln_labels_are_unique_per_invoice() -> None:
    node = FakeNode(kind="cln")
    source, _ = build(node)
    first = source.create(1_000, "a", 600)
    second = source.create(1_000, "a", 600)
    assert first.id != second.id


def test_lookup_unpaid_then_paid_with_a_preimage_that_proves_it(
    node: FakeNode, source: InvoiceSource
) -> None:
    invoice = source.create(50_000, "Tea", 600)

    before = source.lookup(invoice)
    assert before.state == "unpaid"
    assert before.preimage is None  # LNbits and LND hold one already; we must not pass it on

    node.settle(invoice.payment_hash)
    after = source.lookup(invoice)
    assert after.state == "paid"
    assert after.preimage is not None
    assert hashlib.sha256(bytes.fromhex(after.preimage)).hexdigest() == invoice.payment_hash
    assert after.preimage not in repr(after)


def test_lookup_reports_expired(node: FakeNode, source: InvoiceSource) -> None:
    invoice = source.create(50_000, "Tea", 600)
    if node.kind == "lnd":
        node.cancel(invoice.payment_hash)  # LND cancels an invoice when it expires
        assert source.lookup(invoice).state == "expired"
    elif node.kind == "lnbits":
        # LNbits has no expired flag: past its signed expiry an unpaid invoice is expired
        stale = type(invoice)(
            invoice.bolt11,
            invoice.payment_hash,
            invoice.id,
            invoice.amount_msat,
            datetime.now(UTC) - timedelta(seconds=1),
        )
        assert source.lookup(stale).state == "expired"
    else:
        node.expire(invoice.payment_hash)
        assert source.lookup(invoice).state == "expired"


def test_a_bolt11_for_another_amount_is_a_mismatch(node: FakeNode) -> None:
    node.sign_amount_delta = 1_000
    source, _ = build(node)
    with pytest.raises(InvoiceMismatch, match="we asked for 21000 msat"):
        source.create(21_000, "Coffee", 600)


def test_a_reported_hash_that_is_not_the_bolt11s_is_a_mismatch(node: FakeNode) -> None:
    node.report_other_hash = True
    source, _ = build(node)
    with pytest.raises(InvoiceMismatch, match="payment hash"):
        source.create(21_000, "Coffee", 600)


@pytest.mark.parametrize("kind", ["btcpay", "lnbits"])
def test_a_reported_amount_that_differs_is_a_mismatch(kind: str) -> None:
    node = FakeNode(kind=kind, report_other_amount=True)
    source, _ = build(node)
    with pytest.raises(InvoiceMismatch, match="we asked for 21000 msat"):
        source.create(21_000, "Coffee", 600)


def test_a_bolt11_that_does_not_decode_is_a_mismatch(node: FakeNode) -> None:
    node.bad_bolt11 = True
    source, _ = build(node)
    with pytest.raises(InvoiceMismatch, match="does not decode"):
        source.create(21_000, "Coffee", 600)


def test_a_preimage_of_another_hash_is_a_mismatch(node: FakeNode, source: InvoiceSource) -> None:
    invoice = source.create(21_000, "Coffee", 600)
    node.settle(invoice.payment_hash)
    node.wrong_preimage = True
    with pytest.raises(InvoiceMismatch, match="preimage"):
        source.lookup(invoice)


def test_a_wrong_key_is_refused_and_the_message_names_the_setting_not_the_key(
    node: FakeNode,
) -> None:
    http = httpx.Client(transport=node.transport())
    source = make_source(node.kind, URL, "0badc0de" * 4, STORE, http)
    node.echo_key = True
    with pytest.raises(InvoiceSourceRefused) as caught:
        source.create(21_000, "Coffee", 600)
    message = str(caught.value)
    assert "STATION_INVOICE_KEY" in message
    assert "0badc0de" not in message and secret_of(node) not in message


def test_btcpay_403_names_the_missing_permission() -> None:
    node = FakeNode(kind="btcpay", fail_status=403)
    source, _ = build(node)
    with pytest.raises(InvoiceSourceRefused, match="cancreatelightninginvoice"):
        source.create(21_000, "Coffee", 600)


def test_a_timeout_is_unavailable_and_names_the_url_setting(node: FakeNode) -> None:
    node.timeout = True
    source, _ = build(node)
    with pytest.raises(InvoiceSourceUnavailable) as caught:
        source.create(21_000, "Coffee", 600)
    assert "STATION_INVOICE_URL" in str(caught.value)
    assert secret_of(node) not in str(caught.value)


def test_a_server_error_is_unavailable_and_never_repeats_the_key(node: FakeNode) -> None:
    node.fail_status = 503
    node.echo_key = True
    source, _ = build(node)
    with pytest.raises(InvoiceSourceUnavailable) as caught:
        source.create(21_000, "Coffee", 600)
    assert "HTTP 503" in str(caught.value)
    assert secret_of(node) not in str(caught.value)


def test_a_connection_refused_is_unavailable(node: FakeNode) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    http = httpx.Client(transport=httpx.MockTransport(refuse))
    source = make_source(node.kind, URL, secret_of(node), STORE, http)
    with pytest.raises(InvoiceSourceUnavailable, match="could not reach"):
        source.create(21_000, "Coffee", 600)


def test_a_huge_body_is_cut_off(node: FakeNode) -> None:
    node.huge_body = True
    source, _ = build(node)
    with pytest.raises(InvoiceSourceUnavailable, match="larger than"):
        source.create(21_000, "Coffee", 600)


def test_a_redirect_is_not_followed() -> None:
    seen: list[str] = []

    def redirect(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(302, headers={"location": "https://elsewhere.example/steal"})

    http = httpx.Client(transport=httpx.MockTransport(redirect))
    source = make_source("lnbits", URL, KEY, None, http)
    with pytest.raises(InvoiceSourceUnavailable, match="redirect"):
        source.create(21_000, "Coffee", 600)
    assert len(seen) == 1


def test_an_html_page_instead_of_the_api_is_unavailable() -> None:
    http = httpx.Client(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, text="<html>login</html>"))
    )
    source = make_source("btcpay", URL, KEY, STORE, http)
    with pytest.raises(InvoiceSourceUnavailable, match="not JSON"):
        source.create(21_000, "Coffee", 600)


def test_lnd_lookup_uses_the_hex_hash_decoded_from_base64_r_hash() -> None:
    node = FakeNode(kind="lnd")
    source, _ = build(node)
    invoice = source.create(21_000, "Coffee", 600)
    answer = json.loads(node.requests[0].content)
    assert answer["value_msat"] == "21000"
    source.lookup(invoice)
    assert node.requests[1].url.path == f"/v1/invoice/{invoice.payment_hash}"
    assert invoice.id == invoice.payment_hash


def test_lnbits_refuses_fractions_of_a_sat_before_asking() -> None:
    node = FakeNode(kind="lnbits")
    source, _ = build(node)
    with pytest.raises(ValueError, match="whole sats"):
        source.create(21_500, "Coffee", 600)
    assert node.requests == []
