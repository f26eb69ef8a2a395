"""A claim whose payout never comes, against the REAL demo issuer (BTCPay's Greenfield shapes)
on loopback, on SQLite and PostgreSQL: ``tracker reconcile`` leaves it alone inside the grace
period, then fails its payout (source poll, a sentence for the operator, on the payout page),
and a payout that the issuer makes later still links to it and wins. An issuer that cannot be
asked makes it Unknown instead, and a claim on a host no issuer serves is never touched."""

from __future__ import annotations

import json
import secrets
import socket
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from tracker_testlib import StationCredentials, make_tap

from tests.demo.helpers import API_KEY, UID, FakePayer, Tapper, config, invoice, running
from tracker import cli
from tracker.db import make_sessionmaker
from tracker.issuers.secrets import SecretBox
from tracker.models import IssuerKind
from tracker.services import issuers as issuer_service
from tracker.settings import SettingsError, TrackerSettings, load_settings

SECRET = "whsec-" + "g" * 24
UID_HEX = UID.hex().upper()


@pytest.fixture(autouse=True)
def _cli_sees_the_same_key(settings: TrackerSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKER_SECRET_KEY", settings.secret_key)
    monkeypatch.delenv("TRACKER_CLAIM_GRACE_SECONDS", raising=False)


def _add_issuer(engine: Engine, settings: TrackerSettings, url: str, name: str = "demo") -> None:
    with make_sessionmaker(engine)() as session:
        issuer_service.add_issuer(
            session, SecretBox.from_settings(settings), name=name, kind=IssuerKind.btcpay,
            url=url, store_id="demo-store", api_key=API_KEY, webhook_secret=SECRET,
        )


def _claim(client: Any, station: StationCredentials, counter: int, pr: str, payment_hash: str,
           host: str = "127.0.0.1") -> dict[str, Any]:
    tap = make_tap(UID_HEX, counter)
    assert client.post("/api/v1/taps", json=tap, headers=station.headers).status_code == 201
    answer = client.post("/api/v1/claims", headers=station.headers, json={
        "claim_id": secrets.token_hex(16), "tap_key": tap["idempotency_key"],
        "state": "claimed", "amount_msat": 21_000, "memo": "coffee", "bolt11": pr,
        "payment_hash": payment_hash, "issuer_host": host, "k1_hash": None, "reason": None,
        "station_time": datetime.now(UTC).isoformat(),
    })
    assert answer.status_code == 201, answer.text
    return answer.json()["claim"]  # type: ignore[no-any-return]


def _reconcile(settings: TrackerSettings, capsys: pytest.CaptureFixture[str],
               *extra: str) -> tuple[int, list[dict[str, Any]]]:
    capsys.readouterr()
    code = cli.main(["--database-url", settings.database_url, "reconcile", "--once", "--json",
                     *extra])
    lines = capsys.readouterr().out.strip().splitlines()
    return code, [json.loads(line) for line in lines]


def _payout(engine: Engine, payout_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM payout WHERE id = :i"), {"i": payout_id})
        return dict(row.mappings().one())


def _history(engine: Engine, payout_id: int) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT from_state, to_state, source, reason FROM payout_state_change"
            " WHERE payout_pk = :p ORDER BY id"), {"p": payout_id}).all()
    return [tuple(r) for r in rows]


def test_a_claim_never_paid_fails_after_the_grace_and_a_late_payout_still_wins(
    client: Any, admin_client: Any, settings: TrackerSettings, engine: Engine,
    station: StationCredentials, capsys: pytest.CaptureFixture[str],
) -> None:
    with running(config(payer=FakePayer())) as (base, issuer):
        _add_issuer(engine, settings, base)
        card = httpx.post(f"{base}/api/v1/pull-payments/pp1/boltcards",
                          json={"UID": UID.hex(), "onExisting": "UpdateVersion"}).json()
        tapper = Tapper(bytes.fromhex(card["K1"]), bytes.fromhex(card["K2"]))
        p, c = tapper.tap()
        withdraw = httpx.get(f"{base}/boltcard", params={"p": p, "c": c}).json()
        pr, payment_hash = invoice(21_000)
        # The station reports the claim, but the issuer never gets (or keeps) the request.
        claim = _claim(client, station, tapper.counter, pr, payment_hash)
        payout_id = claim["payout_id"]

        code, reports = _reconcile(settings, capsys)  # default grace: one hour
        assert code == 0
        assert reports[0]["open_claims_unmatched"] == 1 and reports[0]["claims_failed"] == 0
        assert _payout(engine, payout_id)["state"] == "AwaitingPayment"

        code, reports = _reconcile(settings, capsys, "--claim-grace", "0")
        assert code == 0 and reports[0]["claims_failed"] == 1, reports
        assert _payout(engine, payout_id)["state"] == "Failed"
        last = _history(engine, payout_id)[-1]
        assert last[:3] == ("AwaitingPayment", "Failed", "poll")
        assert "No payout at issuer 'demo'" in last[3]
        with engine.connect() as conn:  # the station's claim is its own record: untouched
            assert conn.execute(sa.text("SELECT state FROM claim")).scalar_one() == "claimed"
        page = admin_client.client.get(f"/payouts/{payout_id}", headers={"accept": "text/html"})
        assert page.status_code == 200
        assert "No payout at issuer" in page.text and ">poll<" in page.text

        code, reports = _reconcile(settings, capsys, "--claim-grace", "0")  # nothing new
        assert reports[0]["claims_failed"] == 0 and len(_history(engine, payout_id)) == 2

        # The issuer takes the claim after all and pays it: that payout is linked and wins.
        paid = httpx.get(f"{withdraw['callback']}&k1={withdraw['k1']}&pr={pr}", timeout=30)
        assert paid.json()["status"] == "OK", paid.text
        code, reports = _reconcile(settings, capsys, "--claim-grace", "0")
        assert code == 0 and reports[0]["linked"] == 1 and reports[0]["created"] == 0
        row = _payout(engine, payout_id)
        assert row["state"] == "Completed" and row["issuer_payout_id"] is not None
        assert _history(engine, payout_id)[-1][:3] == ("Failed", "Completed", "poll")
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT COUNT(*) FROM payout")).scalar_one() == 1
            assert conn.execute(sa.text("SELECT state FROM claim")).scalar_one() == "paid"
        assert issuer.ledger.payouts(include_cancelled=True)[0].destination == pr


def test_an_issuer_that_cannot_be_asked_makes_it_unknown_and_other_hosts_stay_open(
    client: Any, settings: TrackerSettings, engine: Engine, station: StationCredentials,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as closed:  # a port nothing listens on: connection refused
        closed.bind(("127.0.0.1", 0))
        down_url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    _add_issuer(engine, settings, down_url, name="down")
    ours = _claim(client, station, 1, *invoice(21_000))
    elsewhere = _claim(client, station, 2, *invoice(21_000), host="btcpay.elsewhere.example")

    code, reports = _reconcile(settings, capsys, "--claim-grace", "0")
    assert code == 1 and "unreachable" in reports[0]["error"]
    assert reports[0]["claims_unknown"] == 1 and reports[0]["claims_no_issuer"] == 1
    assert _payout(engine, ours["payout_id"])["state"] == "Unknown"
    last = _history(engine, ours["payout_id"])[-1]
    assert last[:3] == ("AwaitingPayment", "Unknown", "poll") and "could not be asked" in last[3]
    assert _payout(engine, elsewhere["payout_id"])["state"] == "AwaitingPayment"
    assert len(_history(engine, elsewhere["payout_id"])) == 1

    # Still down: nothing is written again. Then the issuer answers, without the payout.
    _reconcile(settings, capsys, "--claim-grace", "0")
    assert len(_history(engine, ours["payout_id"])) == 2
    with make_sessionmaker(engine)() as session:
        issuer_service.remove_issuer(session, name="down")
    with running(config(payer=FakePayer())) as (base, _issuer):
        _add_issuer(engine, settings, base)
        code, reports = _reconcile(settings, capsys, "--claim-grace", "0")
    assert code == 0 and reports[0]["claims_failed"] == 1
    assert _history(engine, ours["payout_id"])[-1][:3] == ("Unknown", "Failed", "poll")
    assert _payout(engine, elsewhere["payout_id"])["state"] == "AwaitingPayment"


def test_the_grace_setting() -> None:
    assert load_settings(env={}, persist_secret=False).claim_grace_seconds == 3600
    env = {"TRACKER_CLAIM_GRACE_SECONDS": "120"}
    assert load_settings(env=env, persist_secret=False).claim_grace_seconds == 120
    with pytest.raises(SettingsError, match="claim_grace_seconds"):
        load_settings(env={"TRACKER_CLAIM_GRACE_SECONDS": "-1"}, persist_secret=False)
