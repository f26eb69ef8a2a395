"""Whatever bytes an issuer answers, the client raises only its own typed errors."""

from __future__ import annotations

import json

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from station.claim import CallbackResult, ClaimError, LnurlWithdrawClient, WithdrawRequest

from .issuers import BOLT11, C, P, btcpay

CARD = f"lnurlw://btcpay.example/boltcard?p={P}&c={C}"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=6),
    max_leaves=20,
)
withdraw_like = st.fixed_dictionaries(
    {},
    optional={
        "tag": st.sampled_from(["withdrawRequest", "payRequest", ""]) | json_values,
        "k1": st.text(max_size=20) | json_values,
        "callback": st.sampled_from(["https://btcpay.example/cb?a=1", "http://btcpay.example/",
                                     "https://other.example/", "::", ""]) | json_values,
        "minWithdrawable": st.integers(-5, 10**19) | json_values,
        "maxWithdrawable": st.integers(-5, 10**19) | json_values,
        "pinLimit": st.integers(-5, 10**6) | json_values,
        "status": st.sampled_from(["OK", "ERROR", "error", "Ok"]) | json_values,
        "reason": json_values,
    },
)
bodies = (
    st.binary(max_size=2048)
    | withdraw_like.map(lambda d: json.dumps(d).encode())
    | st.sampled_from([b"[" * 100_000, b'{"a":' * 30_000, b"1" * 5000, b"\xff\xfe{", b"NaN"])
)
statuses = st.sampled_from([200, 201, 204, 301, 400, 404, 500, 502])


def client(status: int, body: bytes, for_callback: bool) -> LnurlWithdrawClient:
    good = btcpay()

    def handle(request: httpx.Request) -> httpx.Response:
        if for_callback and "pr=" not in str(request.url):
            return good(request)
        return httpx.Response(status, content=body)

    return LnurlWithdrawClient(httpx.Client(transport=httpx.MockTransport(handle)),
                               allowed_hosts=["btcpay.example"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(status=statuses, body=bodies)
def test_any_first_answer_gives_a_request_or_a_typed_error(status: int, body: bytes) -> None:
    try:
        req = client(status, body, for_callback=False).fetch(CARD)
    except ClaimError:
        return
    assert isinstance(req, WithdrawRequest)
    assert 0 <= req.min_msat <= req.max_msat and req.max_msat > 0


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(status=statuses, body=bodies)
def test_any_callback_answer_gives_a_result_or_a_typed_error(status: int, body: bytes) -> None:
    c = client(status, body, for_callback=True)
    req = c.fetch(CARD)
    try:
        result = c.claim(req, BOLT11, amount_msat=2_100_000)
    except ClaimError:
        return
    assert isinstance(result, CallbackResult) and result.status in ("ok", "pending")
