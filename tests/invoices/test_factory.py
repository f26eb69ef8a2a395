"""make_source: the right client for each kind, and errors that name the setting to fix."""

from __future__ import annotations

import httpx
import pytest

from station.invoices import (
    BTCPayInvoices,
    CLNInvoices,
    InvoiceSourceMisconfigured,
    LNbitsInvoices,
    LNDInvoices,
    make_source,
)

HTTP = httpx.Client()
URL = "https://node.example"


@pytest.mark.parametrize(
    ("kind", "key", "cls"),
    [
        ("btcpay", "apikey123", BTCPayInvoices),
        ("lnbits", "invoicekey", LNbitsInvoices),
        ("demo", "invoicekey", LNbitsInvoices),
        ("lnd", "0201abCD", LNDInvoices),
        ("cln", "rune-xyz=", CLNInvoices),
    ],
)
def test_each_kind_builds_its_client(kind: str, key: str, cls: type) -> None:
    source = make_source(kind.upper(), URL + "/", key, "Store1", HTTP)
    assert isinstance(source, cls)
    assert source.kind == kind
    assert key not in repr(source)


@pytest.mark.parametrize(
    ("kind", "url", "key", "store", "setting"),
    [
        ("stripe", URL, "k", None, "STATION_INVOICE_SOURCE"),
        ("", URL, "k", None, "STATION_INVOICE_SOURCE"),
        ("lnbits", "", "k", None, "STATION_INVOICE_URL"),
        ("lnbits", "ftp://node.example", "k", None, "STATION_INVOICE_URL"),
        ("lnbits", "https://user:pw@node.example", "k", None, "STATION_INVOICE_URL"),
        ("lnbits", URL, "", None, "STATION_INVOICE_KEY"),
        ("lnbits", URL, "two words", None, "STATION_INVOICE_KEY"),
        ("btcpay", URL, "k", None, "STATION_INVOICE_STORE_ID"),
        ("btcpay", URL, "k", "../other", "STATION_INVOICE_STORE_ID"),
        ("lnd", URL, "not-hex-secret", None, "STATION_INVOICE_KEY"),
    ],
)
def test_bad_settings_name_the_setting_and_never_the_key(
    kind: str, url: str, key: str, store: str | None, setting: str
) -> None:
    with pytest.raises(InvoiceSourceMisconfigured) as caught:
        make_source(kind, url, key, store, HTTP)
    assert setting in str(caught.value)
    if len(key) > 3:
        assert key not in str(caught.value)
