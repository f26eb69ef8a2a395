"""The tap page: every list links to ``/taps/{id}``; it shows the tap in words and the payout
it led to, a friendly 404 for a tap that does not exist."""

from __future__ import annotations

from datetime import UTC, datetime

from tracker.models import ClaimCreate, TapCreate
from tracker.services import claims, stations, taps


def test_tap_page_shows_the_tap_and_its_payout(viewer_client, session) -> None:  # type: ignore[no-untyped-def]
    station_id = stations.get_or_create_station_id(session, name="till-1")
    now = datetime.now(UTC)
    tap, _ = taps.record_tap(session, station_id=station_id, tap=TapCreate(
        idempotency_key="04A1B2C3D4E5F6:7", card_uid="04A1B2C3D4E5F6", counter=7,
        station_time=now, outcome="accepted", issuer_host="pay.example"))
    claims.record_claim(session, station_id=station_id, claim=ClaimCreate(
        claim_id="c" * 32, tap_key="04A1B2C3D4E5F6:7", state="paid", amount_msat=2_100_000,
        issuer_host="pay.example", station_time=now))
    refused, _ = taps.record_tap(session, station_id=station_id, tap=TapCreate(
        idempotency_key="till-1:0f3b", card_uid="04A1B2C3D4E5F6", counter=7,
        station_time=now, outcome="refused", reason="counter_not_increasing"))
    client = viewer_client.client
    page = client.get(f"/taps/{tap.id}")
    assert page.status_code == 200
    assert "2\u202f100 sats" in page.text  # the tracker's one number format (narrow space)
    assert "/payouts/" in page.text and "Completed" in page.text
    other = client.get(f"/taps/{refused.id}")
    assert other.status_code == 200 and "nothing was claimed" in other.text
    assert client.get("/taps/999999").status_code == 404
    listing = client.get("/taps")
    assert f'href="/taps/{tap.id}"' in listing.text
