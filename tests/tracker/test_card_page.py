"""One card's page as an admin uses it: holder and notes, blocking with a confirm step and a
reason (who and when shown), payouts before taps, the 30-day activity chart in the operator's
zone, the card's identity with a copy button; and the same rules through the service on both
databases."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from sqlmodel import Session
from tracker_testlib import OperatorClient, make_tap

from tracker.models import CardStatus, CardUpdate
from tracker.services import audit
from tracker.services import cards as card_service

HTML = {"accept": "text/html"}
UID = "04A1B2C3D4E5F6"
ADMIN = audit.Actor(name="alice", kind="session", address="127.0.0.1")


def _tap(admin: OperatorClient, token: str, counter: int) -> dict[str, object]:
    answer = admin.client.post(
        "/api/v1/taps",
        json=make_tap(UID, counter, card_id="0f" * 16),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["tap"]  # type: ignore[no-any-return]


def _paid(admin: OperatorClient, token: str, counter: int, sats: int) -> None:
    _tap(admin, token, counter)
    answer = admin.client.post(
        "/api/v1/payouts",
        json={"tap_idempotency_key": f"{UID}:{counter}", "amount_msat": sats * 1000,
              "state": "Completed"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 201, answer.text


def _set_received(engine: Engine, tap_id: object, moment: datetime) -> None:
    """Move a tap in time (plain SQL: the service under test is not used to arrange)."""
    stored = moment.astimezone(UTC)
    if engine.dialect.name == "sqlite":
        stored = stored.replace(tzinfo=None)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE tap SET received_at = :t WHERE id = :i"), {"t": stored, "i": tap_id}
        )


# --- the service, on SQLite and PostgreSQL ------------------------------------------------------


def test_activity_days_are_cut_in_the_operators_zone(
    engine: Engine, session: Session, admin_client: OperatorClient, station_token: str
) -> None:
    """A tap at 23:30 UTC on 5 December is on the 6th in Berlin and on the 5th in UTC."""
    late = _tap(admin_client, station_token, 1)
    early = _tap(admin_client, station_token, 2)
    old = _tap(admin_client, station_token, 3)
    _set_received(engine, late["id"], datetime(2026, 12, 5, 23, 30, tzinfo=UTC))
    _set_received(engine, early["id"], datetime(2026, 12, 6, 8, 0, tzinfo=UTC))
    _set_received(engine, old["id"], datetime(2026, 10, 1, 8, 0, tzinfo=UTC))  # > 30 days
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)

    berlin = card_service.card_activity(session, uid=UID, zone=ZoneInfo("Europe/Berlin"), now=now)
    assert len(berlin) == 30
    assert (berlin[-1].day.isoformat(), berlin[-1].taps) == ("2026-12-06", 2)
    assert berlin[-2].taps == 0
    assert berlin[0].day.isoformat() == "2026-11-07"
    utc = card_service.card_activity(session, uid=UID, zone=UTC, now=now)
    assert [(d.day.isoformat(), d.taps) for d in utc[-2:]] == [("2026-12-05", 1), ("2026-12-06", 1)]
    assert sum(d.taps for d in utc) == 2  # October is outside the 30 days


def test_activity_follows_a_daylight_saving_change(
    engine: Engine, session: Session, admin_client: OperatorClient, station_token: str
) -> None:
    """Berlin leaves summer time on 25 October 2026: 22:30 UTC on the 24th is 00:30 on the
    25th there (UTC+2 until 03:00), while 23:30 UTC on the 25th is still the 26th (UTC+1)."""
    first = _tap(admin_client, station_token, 1)
    second = _tap(admin_client, station_token, 2)
    _set_received(engine, first["id"], datetime(2026, 10, 24, 22, 30, tzinfo=UTC))
    _set_received(engine, second["id"], datetime(2026, 10, 25, 23, 30, tzinfo=UTC))
    days = card_service.card_activity(
        session, uid=UID, zone=ZoneInfo("Europe/Berlin"), now=datetime(2026, 11, 1, tzinfo=UTC)
    )
    busy = {d.day.isoformat(): d.taps for d in days if d.taps}
    assert busy == {"2026-10-25": 1, "2026-10-26": 1}


def test_blocking_needs_a_reason_and_records_who_when_and_why(
    session: Session, admin_client: OperatorClient, station_token: str
) -> None:
    _tap(admin_client, station_token, 1)
    with pytest.raises(ValueError, match="reason"):
        CardUpdate(status=CardStatus.blocked)
    before = datetime.now(UTC)
    card = card_service.update_card(
        session, uid=UID, actor=ADMIN,
        update=CardUpdate(status=CardStatus.blocked, reason="  reported lost  "),
    )
    assert (card.status, card.blocked_by, card.blocked_reason) == (
        CardStatus.blocked, "alice", "reported lost"
    )
    assert card.blocked_at is not None and before - timedelta(seconds=1) <= card.blocked_at
    # The station's view follows at once.
    assert card_service.card_status(session, uid=UID).status == "blocked"
    card = card_service.update_card(
        session, uid=UID, actor=ADMIN, update=CardUpdate(status=CardStatus.active, reason="found")
    )
    assert (card.status, card.blocked_by, card.blocked_at) == (CardStatus.active, None, None)
    events, _ = audit.list_events(session, flt=audit.AuditFilter(target_id=UID))
    assert [(e.action, e.actor, e.detail) for e in events] == [
        ("card.unblock", "alice", "found"),
        ("card.block", "alice", "reported lost"),
    ]


# --- the page (SQLite: the page code is the same on both) --------------------------------------

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@SQLITE_ONLY
def test_card_page_shows_identity_payouts_before_taps_and_the_chart(
    admin_client: OperatorClient, station_token: str
) -> None:
    c = admin_client.client
    zone = "Pacific/Kiritimati"  # UTC+14: "today" differs from the UTC day most of the time
    c.post("/account/timezone", data={"timezone": zone, "csrf_token": admin_client.csrf})
    _paid(admin_client, station_token, 1, 21_000)
    _tap(admin_client, station_token, 2)
    page = c.get(f"/cards/{UID}", headers=HTML).text

    # Identity: no alias yet, so the short UID, the full UID and card id on hover, a copy button.
    title = re.search(r'<h1 class="identity">.*?</h1>', page, re.S)
    assert title is not None
    assert "04A1…E5F6" in title.group(0)
    assert f'title="UID {UID} · card id {"0f" * 16}"' in title.group(0)
    assert f'data-copy="{UID}"' in title.group(0)
    # Payouts come before taps.
    assert page.index("<h2>Payouts</h2>") < page.index("<h2>Taps and counter history</h2>")
    # Today's bars in the operator's zone: 2 taps, 21 000 sats.
    today = datetime.now(ZoneInfo(zone)).date()
    label = f"{today.day} {today:%b}"
    assert f"<title>{label}: 2 taps</title>" in page
    assert f"<title>{label}: 21\u202f000 sats</title>" in page
    assert "Activity, last 30 days (Pacific/Kiritimati)" in page
    assert "<script>" not in page and "onclick" not in page  # the CSP allows no inline script


@SQLITE_ONLY
def test_holder_and_notes_are_saved_and_hostile_input_is_a_friendly_400(
    admin_client: OperatorClient, station_token: str
) -> None:
    _tap(admin_client, station_token, 1)
    c = admin_client.client
    csrf = {"csrf_token": admin_client.csrf}
    saved = c.post(f"/cards/{UID}/holder", data={"holder": " Bob <the baker> ", **csrf})
    assert saved.status_code == 200 and "Holder saved." in saved.text
    assert "Held by Bob &lt;the baker&gt;" in saved.text
    assert c.get(f"/api/v1/cards/{UID}").json()["holder"] == "Bob <the baker>"
    for field, value in (
        ("holder", "Bob\x00"),
        ("holder", "x" * 101),
        ("holder", "line\nbreak"),
        ("alias", "a\x1b[31m"),
        ("notes", "n" * 2001),
    ):
        answer = c.post(f"/cards/{UID}/{field}", data={field: value, **csrf})
        assert answer.status_code == 400, (field, answer.status_code)
        assert "text/html" in answer.headers["content-type"]
        assert f"{field}: " in answer.text  # says which field was wrong…
        assert value not in answer.text  # …without echoing what was sent
    notes = c.post(f"/cards/{UID}/notes", data={"notes": "first line\nsecond line", **csrf})
    assert "second line" in notes.text
    assert c.get(f"/api/v1/cards/{UID}").json()["holder"] == "Bob <the baker>"
    # Without the form's CSRF token: refused.
    assert c.post(f"/cards/{UID}/holder", data={"holder": "Mallory"}).status_code == 403


@SQLITE_ONLY
def test_block_goes_through_a_confirm_page_and_shows_who_and_when(
    admin_client: OperatorClient, viewer_client: OperatorClient, station_token: str
) -> None:
    _tap(admin_client, station_token, 1)
    c = admin_client.client
    zone = "America/New_York"
    c.post("/account/timezone", data={"timezone": zone, "csrf_token": admin_client.csrf})
    card_page = c.get(f"/cards/{UID}", headers=HTML).text
    assert f'href="/cards/{UID}/block"' in card_page
    assert 'name="status" value="blocked"' not in card_page  # no one-click block
    confirm = c.get(f"/cards/{UID}/block", headers=HTML)
    assert confirm.status_code == 200
    assert re.search(r'<input name="reason" required', confirm.text)
    done = c.post(
        f"/cards/{UID}/status",
        data={"status": "blocked", "reason": "stolen at the fair", "csrf_token": admin_client.csrf},
    )
    assert "Card blocked." in done.text
    note = re.search(r'<div class="error-box" role="status" id="blocked-note">(.*?)</div>',
                     done.text, re.S)
    assert note is not None
    blocked_at = c.get(f"/api/v1/cards/{UID}").json()["blocked_at"]
    local = datetime.fromisoformat(blocked_at).astimezone(ZoneInfo(zone))
    shown = local.strftime("%Y-%m-%d %H:%M:%S")
    assert re.sub(r"\s+", " ", note.group(1)).strip().startswith(
        f"Blocked by <strong>admin</strong> on {shown} ({zone}): stolen at the fair."
    )
    history = re.search(r'<div class="panel" id="card-history">.*?</table>', done.text, re.S)
    assert history is not None
    assert re.findall(r'data-action="([^"]+)"', history.group(0)) == ["card.block"]
    assert "stolen at the fair" in history.group(0)
    # A viewer sees the note, not the audit rows, gets no confirm page and cannot post.
    v = viewer_client.client
    viewer_page = v.get(f"/cards/{UID}", headers=HTML).text
    assert "Blocked by <strong>admin</strong>" in viewer_page
    assert 'id="card-history"' not in viewer_page
    assert v.get(f"/cards/{UID}/unblock", headers=HTML).status_code == 403
    refused = v.post(
        f"/cards/{UID}/status",
        data={"status": "active", "reason": "mine", "csrf_token": viewer_client.csrf},
    )
    assert refused.status_code == 403
    assert c.get(f"/api/v1/cards/{UID}/status").json()["status"] == "blocked"
    assert c.get(f"/cards/{UID}/explode", headers=HTML).status_code == 404
