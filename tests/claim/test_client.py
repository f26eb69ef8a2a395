"""The claim client against fakes answering exactly like BTCPay, LNbits boltcards and the
boltcard Go service, plus the faults a station meets on a real network."""

from __future__ import annotations

import logging

import httpx
import pytest

from station.claim import (
    AmountOutOfRange,
    BadWithdrawRequest,
    CallbackResult,
    ClaimRefused,
    HostNotAllowed,
    InsecureScheme,
    InvalidPin,
    IssuerMisbehaved,
    IssuerUnreachable,
    LnurlWithdrawClient,
    NothingToWithdraw,
    OutcomeUnknown,
    PinRequired,
    RedirectRefused,
    WrongPin,
    check_amount,
    needs_pin,
)

from .issuers import (
    BOLT11,
    GO_K1,
    LNBITS_HIT,
    C,
    CountingStream,
    P,
    Recorder,
    boltcard_go,
    btcpay,
    js,
    lnbits,
)

BTCPAY_CARD = f"lnurlw://btcpay.example/boltcard?p={P}&c={C}"
GO_CARD = f"lnurlw://card.example/ln?p={P}&c={C}"
LNBITS_CARD = f"lnurlw://lnbits.example/boltcards/api/v1/scan/kx7a2?p={P}&c={C}"
AMOUNT = 2_100_000  # 2,100 sat


def client_for(rec: Recorder, *hosts: str, **kw: object) -> LnurlWithdrawClient:
    return LnurlWithdrawClient(rec.client(), allowed_hosts=hosts, **kw)  # type: ignore[arg-type]


# -- BTCPay ------------------------------------------------------------------------------

def test_btcpay_pending_reason_and_the_exact_callback_url() -> None:
    rec = Recorder(btcpay())
    client = client_for(rec, "btcpay.example")
    req = client.fetch(BTCPAY_CARD)
    assert (req.min_msat, req.max_msat, req.issuer_host) == (1000, 2_100_000, "btcpay.example")
    assert req.k1 == f"{P}-{C}" and req.pin_limit_msat is None
    result = client.claim(req, BOLT11, amount_msat=AMOUNT)
    in_flight = "The payment has been initiated but is still in-flight."
    assert result == CallbackResult("pending", in_flight)
    assert rec.seen == [
        f"https://btcpay.example/boltcard?p={P}&c={C}",
        f"https://btcpay.example/boltcard?p={P}&c={C}&k1={P}-{C}&pr={BOLT11}",
    ]


@pytest.mark.parametrize("answer", [{"status": "OK"}, {"status": "OK", "reason": None},
                                    {"status": "OK", "reason": "  "}])
def test_btcpay_ok_without_reason_is_ok(answer: object) -> None:
    client = client_for(Recorder(btcpay(callback_answer=(200, answer))), "btcpay.example")
    assert client.claim(client.fetch(BTCPAY_CARD), BOLT11, amount_msat=AMOUNT) == (
        CallbackResult("ok", None)
    )


def test_btcpay_error_with_http_400_on_first_get_keeps_the_reason() -> None:
    client = client_for(Recorder(btcpay(replayed=True)), "btcpay.example")
    with pytest.raises(ClaimRefused) as info:
        client.fetch(BTCPAY_CARD)
    assert info.value.reason == "Replayed or expired query"
    assert info.value.by_issuer and not info.value.callback_sent


def test_btcpay_error_with_http_400_on_callback_is_a_refusal_after_sending() -> None:
    reason = "Payment request was not within bounds (1 - 2100 sats)"
    rec = Recorder(btcpay(callback_answer=(400, {"status": "ERROR", "reason": reason})))
    client = client_for(rec, "btcpay.example")
    req = client.fetch(BTCPAY_CARD)
    with pytest.raises(ClaimRefused) as info:
        client.claim(req, BOLT11, amount_msat=AMOUNT)
    assert info.value.reason == reason and info.value.callback_sent
    assert not isinstance(info.value, WrongPin)


def test_btcpay_nothing_left_min_max_zero_is_refused_clearly() -> None:
    rec = Recorder(btcpay(remaining_msat=0))
    with pytest.raises(NothingToWithdraw, match="nothing to withdraw"):
        client_for(rec, "btcpay.example").fetch(BTCPAY_CARD)
    assert len(rec.seen) == 1


# -- boltcard Go service ------------------------------------------------------------------

def test_go_generic_error_with_http_200() -> None:
    client = client_for(Recorder(boltcard_go(refuse_first=True)), "card.example")
    with pytest.raises(ClaimRefused) as info:
        client.fetch(GO_CARD)
    assert info.value.reason == "bad request"


@pytest.mark.parametrize(("pin_limit", "expected"), [
    (AMOUNT + 1, False),   # below the limit: no PIN
    (AMOUNT, True),        # at the limit: PIN
    (AMOUNT - 1, True),    # above the limit: PIN
    (None, False),         # no pinLimit at all
])
def test_pin_limit_below_at_above(pin_limit: int | None, expected: bool) -> None:
    rec = Recorder(boltcard_go(pin_limit_msat=pin_limit))
    client = client_for(rec, "card.example")
    req = client.fetch(GO_CARD)
    assert req.pin_limit_msat == pin_limit
    assert needs_pin(req, AMOUNT) is expected
    if expected:
        with pytest.raises(PinRequired) as info:
            client.claim(req, BOLT11, amount_msat=AMOUNT)
        assert info.value.pin_limit_msat == pin_limit
        assert len(rec.seen) == 1  # nothing sent
        assert client.claim(req, BOLT11, amount_msat=AMOUNT, pin="4321").status == "ok"
        assert rec.seen[-1] == f"https://card.example/cb?k1={GO_K1}&pr={BOLT11}&pin=4321"
    else:
        client.claim(req, BOLT11, amount_msat=AMOUNT, pin="4321")
        assert "pin=" not in rec.seen[-1]  # a PIN goes out only when the issuer asks for it


def test_go_wrong_pin_is_a_plain_refusal_because_its_reason_says_nothing() -> None:
    client = client_for(Recorder(boltcard_go(pin_limit_msat=1000)), "card.example")
    req = client.fetch(GO_CARD)
    with pytest.raises(ClaimRefused) as info:
        client.claim(req, BOLT11, amount_msat=AMOUNT, pin="9999")
    assert type(info.value) is ClaimRefused and info.value.reason == "bad request"


def test_wrong_pin_named_by_the_issuer_is_wrong_pin_and_the_pin_never_shows() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if "pr=" in str(request.url):
            return js(200, {"status": "ERROR", "reason": "Wrong PIN 7391, 2 attempts left"})
        return boltcard_go(pin_limit_msat=1000)(request)

    client = client_for(Recorder(handle), "card.example")
    req = client.fetch(GO_CARD)
    with pytest.raises(WrongPin) as info:
        client.claim(req, BOLT11, amount_msat=AMOUNT, pin="7391")
    assert "PIN" in info.value.reason and "attempts left" in info.value.reason
    assert "7391" not in str(info.value) and "7391" not in repr(info.value.args)


@pytest.mark.parametrize("pin", ["123", "123456789", "12a4", "١٢٣٤", " 1234", ""])
def test_pin_must_be_4_to_8_ascii_digits_and_is_not_sent_otherwise(pin: str) -> None:
    rec = Recorder(boltcard_go(pin_limit_msat=1000))
    client = client_for(rec, "card.example")
    req = client.fetch(GO_CARD)
    with pytest.raises(InvalidPin):
        client.claim(req, BOLT11, amount_msat=AMOUNT, pin=pin)
    assert len(rec.seen) == 1


# -- LNbits boltcards ---------------------------------------------------------------------

def test_lnbits_ok_means_paid_and_paylink_is_ignored() -> None:
    rec = Recorder(lnbits())
    client = client_for(rec, "lnbits.example")
    req = client.fetch(LNBITS_CARD)
    assert req.max_msat == 30_000_000 and req.k1 == LNBITS_HIT
    assert client.claim(req, BOLT11, amount_msat=AMOUNT) == CallbackResult("ok", None)
    assert rec.seen[-1] == (
        f"https://lnbits.example/boltcards/api/v1/lnurl/cb/{LNBITS_HIT}"
        f"?k1={LNBITS_HIT}&pr={BOLT11}"
    )


@pytest.mark.parametrize("reason", ["This link is already used.", "Card is disabled.",
                                    "CMAC does not check.", "Max daily limit spent."])
def test_lnbits_first_get_errors(reason: str) -> None:
    with pytest.raises(ClaimRefused) as info:
        client_for(Recorder(lnbits(first_error=reason)), "lnbits.example").fetch(LNBITS_CARD)
    assert info.value.reason == reason


def test_lnbits_callback_error_payment_already_claimed() -> None:
    rec = Recorder(lnbits(callback_error="Payment already claimed"))
    client = client_for(rec, "lnbits.example")
    with pytest.raises(ClaimRefused, match="Payment already claimed"):
        client.claim(client.fetch(LNBITS_CARD), BOLT11, amount_msat=AMOUNT)


# -- amounts and validation ---------------------------------------------------------------

def test_amount_outside_min_max_is_refused_before_anything_is_sent() -> None:
    rec = Recorder(btcpay())
    client = client_for(rec, "btcpay.example")
    req = client.fetch(BTCPAY_CARD)
    for amount in (999, 2_100_001, 0, -5):
        with pytest.raises(AmountOutOfRange):
            check_amount(req, amount)
        with pytest.raises(AmountOutOfRange):
            client.claim(req, BOLT11, amount_msat=amount)
    check_amount(req, 1000)
    check_amount(req, 2_100_000)
    assert len(rec.seen) == 1


def test_unknown_extra_fields_are_ignored() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return js(200, {"tag": "withdrawRequest", "callback": "https://card.example/cb",
                        "k1": "k", "minWithdrawable": 1000, "maxWithdrawable": 5000,
                        "status": "OK", "somethingNew": {"nested": [1, 2]}, "payLink": None,
                        "balanceCheck": "https://card.example/x", "currentBalance": 5})

    req = client_for(Recorder(handle), "card.example").fetch(GO_CARD)
    assert (req.min_msat, req.max_msat) == (1000, 5000)


@pytest.mark.parametrize("change", [
    {"tag": "payRequest"}, {"k1": ""}, {"k1": "x" * 1001}, {"k1": 12},
    {"callback": "not a url"}, {"callback": None},
    {"minWithdrawable": 6000}, {"minWithdrawable": -1}, {"maxWithdrawable": "5000"},
    {"maxWithdrawable": True}, {"minWithdrawable": 1.5}, {"pinLimit": "1000"},
])
def test_invalid_withdraw_requests_are_refused(change: dict[str, object]) -> None:
    body = {"tag": "withdrawRequest", "callback": "https://card.example/cb", "k1": "k",
            "minWithdrawable": 1000, "maxWithdrawable": 5000, **change}
    with pytest.raises(BadWithdrawRequest):
        client_for(Recorder(lambda r: js(200, body)), "card.example").fetch(GO_CARD)


def test_callback_on_another_host_not_allowed_is_refused_on_fetch() -> None:
    body = {"tag": "withdrawRequest", "callback": "https://collector.example/cb", "k1": "k",
            "minWithdrawable": 1000, "maxWithdrawable": 5000}
    with pytest.raises(HostNotAllowed, match=r"collector\.example"):
        client_for(Recorder(lambda r: js(200, body)), "card.example").fetch(GO_CARD)


def test_http_callback_to_a_clearnet_host_is_refused() -> None:
    body = {"tag": "withdrawRequest", "callback": "http://card.example/cb", "k1": "k",
            "minWithdrawable": 1000, "maxWithdrawable": 5000}
    with pytest.raises(InsecureScheme):
        client_for(Recorder(lambda r: js(200, body)), "card.example").fetch(GO_CARD)


def test_host_not_allowed_means_nothing_is_contacted() -> None:
    rec = Recorder(btcpay())
    with pytest.raises(HostNotAllowed, match="no claim is ever sent"):
        client_for(rec).fetch(BTCPAY_CARD)
    assert rec.seen == []


# -- network faults -----------------------------------------------------------------------

def _callback_fault(exc: type[httpx.TransportError]) -> tuple[Recorder, LnurlWithdrawClient]:
    good = btcpay()

    def handle(request: httpx.Request) -> httpx.Response:
        if "pr=" in str(request.url):
            raise exc("simulated", request=request)
        return good(request)

    rec = Recorder(handle)
    return rec, client_for(rec, "btcpay.example")


@pytest.mark.parametrize("exc", [httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError,
                                 httpx.WriteTimeout])
def test_timeout_or_dropped_connection_after_sending_is_outcome_unknown(
    exc: type[httpx.TransportError],
) -> None:
    rec, client = _callback_fault(exc)
    req = client.fetch(BTCPAY_CARD)
    with pytest.raises(OutcomeUnknown) as info:
        client.claim(req, BOLT11, amount_msat=AMOUNT)
    assert info.value.callback_sent
    assert sum("pr=" in u for u in rec.seen) == 1  # received once, never re-sent


@pytest.mark.parametrize("exc", [httpx.ConnectError, httpx.ConnectTimeout])
def test_connect_error_before_sending_is_issuer_unreachable(
    exc: type[httpx.TransportError],
) -> None:
    _, client = _callback_fault(exc)
    req = client.fetch(BTCPAY_CARD)
    with pytest.raises(IssuerUnreachable) as info:
        client.claim(req, BOLT11, amount_msat=AMOUNT)
    assert not info.value.callback_sent


def test_issuer_down_on_first_get_is_unreachable() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(IssuerUnreachable):
        client_for(Recorder(handle), "btcpay.example").fetch(BTCPAY_CARD)


def test_redirect_to_another_host_is_refused_and_never_followed() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host == "btcpay.example":
            return httpx.Response(302, headers={"location": "https://elsewhere.example/boltcard"})
        return btcpay(host="elsewhere.example")(request)

    rec = Recorder(handle)
    with pytest.raises(RedirectRefused) as info:
        client_for(rec, "btcpay.example", "elsewhere.example").fetch(BTCPAY_CARD)
    assert info.value.target_host == "elsewhere.example"
    assert isinstance(info.value, HostNotAllowed)
    assert rec.hosts() == ["btcpay.example"]


def test_redirect_within_the_same_host_is_followed_on_fetch() -> None:
    good = btcpay()

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/old":
            return httpx.Response(301, headers={"location": f"/boltcard?p={P}&c={C}"})
        return good(request)

    rec = Recorder(handle)
    req = client_for(rec, "btcpay.example").fetch("lnurlw://btcpay.example/old")
    assert req.k1 == f"{P}-{C}" and len(rec.seen) == 2


def test_redirect_answering_the_callback_is_outcome_unknown_and_not_followed() -> None:
    good = btcpay()

    def handle(request: httpx.Request) -> httpx.Response:
        if "pr=" in str(request.url):
            return httpx.Response(307, headers={"location": "https://elsewhere.example/cb"})
        return good(request)

    rec = Recorder(handle)
    client = client_for(rec, "btcpay.example", "elsewhere.example")
    with pytest.raises(OutcomeUnknown, match="redirect"):
        client.claim(client.fetch(BTCPAY_CARD), BOLT11, amount_msat=AMOUNT)
    assert "elsewhere.example" not in rec.hosts()


def test_ten_megabyte_body_is_refused_without_reading_it() -> None:
    stream = CountingStream(10 * 1024 * 1024)
    rec = Recorder(lambda r: httpx.Response(200, stream=stream))
    with pytest.raises(IssuerMisbehaved, match="longer than 65536"):
        client_for(rec, "btcpay.example").fetch(BTCPAY_CARD)
    assert stream.pulled <= 64 * 1024 + stream.chunk


def test_ten_megabyte_callback_answer_is_outcome_unknown_without_reading_it() -> None:
    stream = CountingStream(10 * 1024 * 1024)
    good = btcpay()

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=stream) if "pr=" in str(request.url) else good(request)

    client = client_for(Recorder(handle), "btcpay.example")
    with pytest.raises(OutcomeUnknown, match="oversized"):
        client.claim(client.fetch(BTCPAY_CARD), BOLT11, amount_msat=AMOUNT)
    assert stream.pulled <= 64 * 1024 + stream.chunk


def test_announced_oversized_body_is_refused_before_reading() -> None:
    stream = CountingStream(10 * 1024 * 1024)
    rec = Recorder(lambda r: httpx.Response(
        200, stream=stream, headers={"content-length": str(10 * 1024 * 1024)}))
    with pytest.raises(IssuerMisbehaved):
        client_for(rec, "btcpay.example").fetch(BTCPAY_CARD)
    assert stream.pulled == 0


def test_garbage_callback_answer_is_outcome_unknown_not_refused() -> None:
    good = btcpay()

    def handle(request: httpx.Request) -> httpx.Response:
        if "pr=" in str(request.url):
            return httpx.Response(502, content=b"<html>Bad Gateway</html>")
        return good(request)

    client = client_for(Recorder(handle), "btcpay.example")
    with pytest.raises(OutcomeUnknown):
        client.claim(client.fetch(BTCPAY_CARD), BOLT11, amount_msat=AMOUNT)


def test_the_client_asks_for_the_configured_timeout() -> None:
    seen: list[dict[str, float | None]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return btcpay()(request)

    client_for(Recorder(handle), "btcpay.example").fetch(BTCPAY_CARD)
    assert seen[0] == {"connect": 30.0, "read": 30.0, "write": 30.0, "pool": 30.0}


# -- secrets ------------------------------------------------------------------------------

def test_k1_pin_and_full_p_c_never_in_repr_messages_or_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)

    def handle(request: httpx.Request) -> httpx.Response:
        if "pr=" in str(request.url):
            return js(400, {"status": "ERROR", "reason": f"Bad PIN for k1 {P}-{C}"})
        body = btcpay()(request)
        data = body.json() | {"pinLimit": 1000}
        return js(200, data)

    client = client_for(Recorder(handle), "btcpay.example")
    req = client.fetch(BTCPAY_CARD)
    with pytest.raises(WrongPin) as info:
        client.claim(req, BOLT11, amount_msat=AMOUNT, pin="5820")
    assert "HTTP Request: GET https://btcpay.example/boltcard?…" in caplog.text  # httpx's own line
    texts = [repr(req), str(req), str(info.value), info.value.reason, caplog.text]
    for text in texts:
        for secret in (P, C, "5820"):
            assert secret not in text, (secret, text)
    assert req.k1_hash in repr(req) or req.k1_hash[:12] in repr(req)
