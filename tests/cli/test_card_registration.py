"""``station card provision`` registers the card in a real tracker after its read-back and SUN
check, ``station card wipe`` marks it wiped there; a provision again makes it active again.
Only a station token may do either."""

from __future__ import annotations

from pathlib import Path

import httpx

from station.emulator.card import EmulatedCard
from station.emulator.state import save_state
from tests.tracker_live import LiveTracker

from .station_cli import run_station

ISSUER = "00000000000000000000000000000001"
UID = "04A39493CC8680"
URL = "lnurlw://pay.example.com/ln"


def card_row(tracker: LiveTracker) -> tuple[str, str | None] | None:
    import sqlalchemy as sa

    with tracker.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT status, alias FROM card WHERE uid = :u"),
                           {"u": UID}).fetchone()
    return None if row is None else (str(row[0]), row[1])


def test_provision_registers_and_wipe_marks_wiped(tmp_path: Path) -> None:
    tracker = LiveTracker(tmp_path)
    token = tracker.add_station("till-1")
    tracker.start()
    try:
        state = tmp_path / "card.json"
        save_state(state, EmulatedCard.factory(uid=bytes.fromhex(UID)).to_state())
        link = ["--tracker-url", tracker.url, "--station-token", token]
        common = ["--backend", "emulated", "--card-state", str(state), "--issuer-key", ISSUER,
                  "--journal", str(tmp_path / "journal")]
        prov = run_station("card", "provision", *common, "--url-template", URL,
                           "--alias", "Alice's card", *link)
        assert prov.returncode == 0, prov.stderr
        assert f"tracker: card {UID} registered (active)" in prov.stderr
        assert card_row(tracker) == ("active", "Alice's card")
        assert token not in prov.stdout + prov.stderr

        wipe = run_station("card", "wipe", *common, *link)
        assert wipe.returncode == 0, wipe.stderr
        assert f"tracker: card {UID} marked (wiped)" in wipe.stderr
        assert card_row(tracker) == ("wiped", "Alice's card")

        again = run_station("card", "provision", *common, "--url-template", URL,
                            "--alias", "someone else", *link)
        assert again.returncode == 0, again.stderr
        assert card_row(tracker) == ("active", "Alice's card")  # the alias given first stays

        # Without a station token the tracker refuses, and says so; the card is still done.
        bad = httpx.post(f"{tracker.url}/api/v1/cards/register", json={"uid": UID})
        assert bad.status_code == 401
        bad = httpx.post(f"{tracker.url}/api/v1/cards/{UID}/wiped",
                         headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401
        unknown = httpx.post(f"{tracker.url}/api/v1/cards/04FFFFFFFFFFFF/wiped",
                             headers={"Authorization": f"Bearer {token}"})
        assert unknown.status_code == 404
        garbage = httpx.post(f"{tracker.url}/api/v1/cards/register",
                             headers={"Authorization": f"Bearer {token}"},
                             json={"uid": "zz\u0000", "card_id": "x"})
        assert garbage.status_code == 422
    finally:
        tracker.close()
