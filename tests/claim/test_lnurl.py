"""Card URL handling: LUD-01 bech32, LUD-17 lnurlw://, .onion, insecure_hosts, allow-list."""

from __future__ import annotations

import httpx
import pytest

from station.claim import (
    HostNotAllowed,
    HostPolicy,
    InsecureScheme,
    InvalidLnurl,
    decode_bech32_lnurl,
    resolve_card_url,
    with_query,
)

# LUD-01 (lnurl/luds 01.md), the published example.
LUD01_BECH32 = (
    "LNURL1DP68GURN8GHJ7UM9WFMXJCM99E3K7MF0V9CXJ0M385EKVCENXC6R2C35XVUKXEFCV5MKVV34X5EKZD3EV56NYD"
    "3HXQURZEPEXEJXXEPNXSCRVWFNV9NXZCN9XQ6XYEFHVGCXXCMYXYMNSERXFQ5FNS"
)
LUD01_URL = "https://service.com/api?q=3fc3645b439ce8e7f2553a69e5267081d96dcd340693afabe04be7b0ccd178df"


def policy(*allowed: str, insecure: tuple[str, ...] = ()) -> HostPolicy:
    return HostPolicy.build(allowed, insecure)


@pytest.mark.parametrize("text", [LUD01_BECH32, LUD01_BECH32.lower(), "lightning:" + LUD01_BECH32,
                                  "LIGHTNING:" + LUD01_BECH32.lower(), f"  {LUD01_BECH32}\n"])
def test_lud01_vector_decodes_in_either_case_and_behind_lightning_prefix(text: str) -> None:
    assert str(resolve_card_url(text, policy("service.com"))) == LUD01_URL


def test_lud01_mixed_case_is_refused() -> None:
    mixed = LUD01_BECH32[:20] + LUD01_BECH32[20:].lower()
    with pytest.raises(InvalidLnurl, match="upper or all lower"):
        decode_bech32_lnurl(mixed)


def test_lud01_damaged_checksum_is_refused() -> None:
    damaged = LUD01_BECH32[:-1] + ("Q" if LUD01_BECH32[-1] != "Q" else "P")
    with pytest.raises(InvalidLnurl, match="checksum"):
        resolve_card_url(damaged, policy("service.com"))


def test_lnurlw_means_https() -> None:
    url = resolve_card_url(
        "lnurlw://card.example/ln?p=A2EF40F6D46F1BB36E6EBF0114D4A464&c=F509EEA788E37E32",
        policy("card.example"),
    )
    assert str(url) == (
        "https://card.example/ln?p=A2EF40F6D46F1BB36E6EBF0114D4A464&c=F509EEA788E37E32"
    )


def test_lnurlw_to_onion_means_http() -> None:
    onion = "vww6ybal4bd7szmgncyruucpgfkqahzddi37ktceo3ah7ngmcopnpyyd.onion"
    url = resolve_card_url(f"lnurlw://{onion}/ln?p=00&c=11", policy(onion))
    assert url.scheme == "http" and url.host == onion


def test_insecure_hosts_allow_plain_http_and_map_lnurlw_to_http() -> None:
    pol = policy("127.0.0.1", insecure=("127.0.0.1",))
    assert str(resolve_card_url("lnurlw://127.0.0.1:8765/boltcard?p=1&c=2", pol)) == (
        "http://127.0.0.1:8765/boltcard?p=1&c=2"
    )
    assert resolve_card_url("http://127.0.0.1:8765/x", pol).scheme == "http"


def test_plain_http_to_clearnet_host_is_refused_even_when_allowed() -> None:
    with pytest.raises(InsecureScheme, match="insecure_hosts"):
        resolve_card_url("http://card.example/ln?p=1&c=2", policy("card.example"))


def test_empty_allowed_hosts_sends_nothing_and_names_the_setting() -> None:
    with pytest.raises(HostNotAllowed) as info:
        resolve_card_url("lnurlw://card.example/ln?p=1&c=2", policy())
    message = str(info.value)
    assert "no claim is ever sent" in message
    assert "allowed_hosts" in message and "STATION_ALLOWED_HOSTS" in message
    assert info.value.host == "card.example" and info.value.setting == "allowed_hosts"


def test_host_not_listed_is_refused_and_subdomains_do_not_match() -> None:
    with pytest.raises(HostNotAllowed, match=r"evil\.example"):
        resolve_card_url("lnurlw://evil.example/ln", policy("card.example"))
    with pytest.raises(HostNotAllowed):
        resolve_card_url("lnurlw://x.card.example/ln", policy("card.example"))
    with pytest.raises(HostNotAllowed):
        resolve_card_url("lnurlw://card.example.evil.example/ln", policy("card.example"))


def test_host_match_is_case_insensitive_and_idna_normalised() -> None:
    pol = policy("Card.Example.", "BÜCHER.example")
    assert resolve_card_url("lnurlw://CARD.example/ln", pol).host == "card.example"
    assert resolve_card_url("lnurlw://xn--bcher-kva.example/ln", pol).raw_host == (
        b"xn--bcher-kva.example"
    )
    assert resolve_card_url("lnurlw://bücher.example/ln", pol).raw_host == b"xn--bcher-kva.example"


@pytest.mark.parametrize("text", [
    "lnurlp://card.example/pay",          # a pay link, not a withdraw link
    "ftp://card.example/ln",
    "card.example/ln?p=1",                # no scheme
    "lnurlw://user:pw@card.example/ln",   # user info would be sent as credentials
    "lnurlw:///ln",                       # no host
    "lnurlw://card.example/ln?p=1 2",     # whitespace
])
def test_what_is_not_a_usable_withdraw_link_is_refused(text: str) -> None:
    with pytest.raises((InvalidLnurl, InsecureScheme)):
        resolve_card_url(text, policy("card.example"))


def test_callback_params_are_merged_into_the_existing_query_in_order() -> None:
    merged = with_query("https://btcpay.example/boltcard?p=AB&c=CD",
                        [("k1", "AB-CD"), ("pr", "lnbc1x"), ("pin", "0042")])
    assert merged == "https://btcpay.example/boltcard?p=AB&c=CD&k1=AB-CD&pr=lnbc1x&pin=0042"
    assert with_query("https://x.example/cb", [("k1", "a b&c=d")]) == (
        "https://x.example/cb?k1=a%20b%26c%3Dd"
    )
    assert with_query("https://x.example/cb?", [("k1", "1")]) == "https://x.example/cb?k1=1"
    assert with_query("https://x.example/cb?a=1#frag", [("k1", "1")]) == (
        "https://x.example/cb?a=1&k1=1"
    )
    # httpx keeps the merged query as it is (no re-encoding, no reordering).
    assert str(httpx.URL(merged)) == merged
