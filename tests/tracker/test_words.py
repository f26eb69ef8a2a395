"""Operators read sentences, not codes; a tap that does not prove its UID is marked as such and
kept out of the card's counts (issue 12, "Words, not codes")."""

from __future__ import annotations

import csv
import io
import re
import secrets

from fastapi.testclient import TestClient
from tracker_testlib import OperatorClient, StationCredentials, make_tap

HTML = {"accept": "text/html"}
UID = "04A1B2C3D4E5F6"


def _post(client: TestClient, station: StationCredentials, body: dict[str, object]) -> dict:
    answer = client.post("/api/v1/taps", json=body, headers=station.headers)
    assert answer.status_code in (200, 201), answer.text
    return answer.json()["tap"]  # type: ignore[no-any-return]


def _visible_text(html: str) -> str:
    """The page as a reader sees it: tags and attribute values (tooltips) removed."""
    return re.sub(r"<[^>]*>", " ", html)


def test_reasons_read_as_sentences_with_the_code_on_hover_and_in_the_api(
    client: TestClient, station: StationCredentials, viewer_client: OperatorClient
) -> None:
    _post(client, station, make_tap(UID, 25))
    replay = _post(
        client, station, make_tap(UID, 25, outcome="refused", reason="counter_not_increasing")
    )
    blocked = _post(client, station, make_tap(UID, 26, outcome="refused", reason="card_blocked"))
    assert replay["reason"] == "counter_not_increasing"
    assert replay["reason_text"] == "Replayed: counter 25 was already used"
    assert blocked["reason_text"] == "Refused: an operator blocked this card"
    assert replay["trust_note"] is None

    page = viewer_client.client.get("/taps", headers=HTML).text
    shown = _visible_text(page)
    assert "Replayed: counter 25 was already used" in shown
    assert "counter_not_increasing" not in shown and "card_blocked" not in shown
    assert 'title="counter_not_increasing"' in page  # the code stays one hover away


def test_a_bad_mac_tap_is_marked_and_not_counted_for_the_card(
    client: TestClient, station: StationCredentials, viewer_client: OperatorClient
) -> None:
    _post(client, station, make_tap(UID, 3))
    forged = _post(client, station, make_tap(UID, 0, outcome="refused", reason="invalid_tap"))
    assert forged["trust_note"] == "unverified — forged or wrong keys"

    card = viewer_client.client.get(f"/api/v1/cards/{UID}").json()
    assert (card["tap_count"], card["refused_count"], card["unverified_count"]) == (1, 0, 1)
    assert card["last_counter"] == 3

    page = viewer_client.client.get("/taps", headers=HTML).text
    assert "unverified — forged or wrong keys" in _visible_text(page)
    forged_row = re.search(rf'<tr data-id="{forged["id"]}">.*?</tr>', page, re.S)
    assert forged_row is not None
    # the claimed UID is not drawn as the card: no link to the card page, no full UID as text
    assert f'href="/cards/{UID}"' not in forged_row.group(0)
    assert UID not in _visible_text(forged_row.group(0))
    card_page = viewer_client.client.get(f"/cards/{UID}", headers=HTML).text
    assert "1 unverified, not counted" in card_page


def test_a_foreign_card_tap_says_it_was_not_verified(
    client: TestClient, station: StationCredentials, viewer_client: OperatorClient
) -> None:
    body = make_tap(UID, 0, key=f"{station.name}:{secrets.token_hex(16)}")
    body["verified"] = False
    foreign = _post(client, station, body)
    assert foreign["trust_note"] == "foreign card, not verified"
    card = viewer_client.client.get(f"/api/v1/cards/{UID}").json()
    assert (card["tap_count"], card["unverified_count"]) == (0, 1)
    page = viewer_client.client.get("/taps", headers=HTML).text
    assert "foreign card, not verified" in _visible_text(page)


def test_exports_carry_the_code_and_the_words(
    client: TestClient, station: StationCredentials, viewer_client: OperatorClient
) -> None:
    _post(client, station, make_tap(UID, 0, outcome="refused", reason="invalid_tap"))
    answer = viewer_client.client.get("/api/v1/taps/export.csv")
    assert answer.status_code == 200
    (row,) = list(csv.DictReader(io.StringIO(answer.text)))
    assert row["reason"] == "invalid_tap"
    assert row["reason_text"].startswith("Rejected: the card's signature did not check")
    assert row["trust_note"] == "unverified — forged or wrong keys"
    assert row["verified"] == "True"
