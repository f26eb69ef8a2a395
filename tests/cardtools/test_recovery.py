"""Every interruption of provision and wipe, rehearsed on the emulated card: pull the card after
and during every APDU, classify what is left (no authentication), then resume or wipe — the card
always ends blank or configured with the keys the user holds, and never with a failed
authentication on it."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from station import cardtools as ct
from station.cardtools import classify
from station.emulator.card import EmulatedCard
from station.emulator.state import CardState, save_state
from station.ntag424 import keys
from station.readers.emulated import open_state_card

ISSUER = bytes.fromhex("00000000000000000000000000000001")
UID = bytes.fromhex("04a39493cc8680")
TEMPLATE = ct.url_template("lnurlw://pay.example.com/ln")
OURS = keys.derive_keys(ISSUER, UID, 1)
SOURCE = ct.KeySource(fixed=OURS)


def fresh(path: Path) -> Path:
    save_state(path, EmulatedCard.factory(uid=UID).to_state())
    return path


def on(path: Path, **pull: int) -> ct.ReaderChoice:
    return ct.ReaderChoice(backend="emulated", timeout=1.0, state=path, **pull)  # type: ignore[arg-type]


def state_of(path: Path) -> CardState:
    return CardState.from_dict(json.loads(path.read_text()))


def found(path: Path, card_keys: keys.KeySet | None = OURS) -> ct.Classification:
    reader, _card, save = open_state_card(path)
    link = reader.wait_for_card(1)
    assert link is not None
    try:
        return ct.run_flow(link, ct.classify_flow(None if card_keys is None else
                                                  (lambda _uid: card_keys)))
    finally:
        save()


def _total(tmp_path: Path, action: str) -> int:
    for n in range(10, 80):
        path = fresh(tmp_path / f"count-{action}-{n}.json")
        if action == "wipe":
            ct.provision(on(path), TEMPLATE, OURS, 1)
        try:
            run(action, on(path, pull_after=n), tmp_path)
        except ct.NoCard:
            continue
        return n
    raise AssertionError("no APDU count found")


def run(action: str, choice: ct.ReaderChoice, tmp_path: Path, *, resume: bool = False) -> None:
    journal = ct.Journal(tmp_path / "journal")
    if action == "provision":
        ct.provision(choice, TEMPLATE, OURS, 1, journal=journal, resume=resume)
    else:
        ct.wipe(choice, SOURCE, journal=journal)


def assert_configured(path: Path) -> None:
    seen = found(path)
    assert seen.state == classify.CONFIGURED, seen.detail
    saved = state_of(path)
    assert saved.keys == [OURS.k0, OURS.k1, OURS.k2, OURS.k3, OURS.k4]
    assert saved.tot_fail_ctr == [0] * 5, "no authentication may fail during recovery"


def assert_blank(path: Path) -> None:
    seen = found(path)
    assert seen.state == classify.BLANK, seen.detail
    saved = state_of(path)
    assert saved.keys == [bytes(16)] * 5 and saved.tot_fail_ctr == [0] * 5


@pytest.fixture(scope="module")
def totals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    tmp = tmp_path_factory.mktemp("totals")
    return {a: _total(tmp, a) for a in ("provision", "wipe")}


def _recover_after_provision_cut(path: Path, tmp_path: Path, finish: str) -> None:
    seen = found(path)
    assert seen.state in (classify.BLANK, classify.PARTIAL_PROVISION, classify.CONFIGURED), (
        seen.state, seen.detail)
    if finish == "wipe":
        if seen.state != classify.BLANK:
            run("wipe", on(path), tmp_path)
        assert_blank(path)
        return
    if seen.state == classify.CONFIGURED:
        assert_configured(path)
        return
    if seen.state == classify.PARTIAL_PROVISION:
        with pytest.raises(ct.Refused, match="--resume"):
            run("provision", on(path), tmp_path)
    run("provision", on(path), tmp_path, resume=True)
    assert_configured(path)


@pytest.mark.parametrize("finish", ["resume", "wipe"])
@pytest.mark.parametrize("mode", ["pull_after", "pull_during"])
def test_every_cut_point_of_provision_recovers(
    tmp_path: Path, totals: dict[str, int], mode: str, finish: str
) -> None:
    total = totals["provision"]
    first = 0 if mode == "pull_after" else 1
    states = set()
    for n in range(first, total + 1):
        path = fresh(tmp_path / f"{mode}-{n}.json")
        try:
            run("provision", on(path, **{mode: n}), tmp_path)
        except ct.NoCard:
            pass
        else:
            assert n >= total - (mode == "pull_during")
        states.add(found(path).state)
        _recover_after_provision_cut(path, tmp_path, finish)
    assert states == {classify.BLANK, classify.PARTIAL_PROVISION, classify.CONFIGURED}


@pytest.mark.parametrize("mode", ["pull_after", "pull_during"])
def test_every_cut_point_of_wipe_recovers(
    tmp_path: Path, totals: dict[str, int], mode: str
) -> None:
    total = totals["wipe"]
    first = 0 if mode == "pull_after" else 1
    states = set()
    for n in range(first, total + 1):
        path = fresh(tmp_path / f"{mode}-{n}.json")
        ct.provision(on(path), TEMPLATE, OURS, 1)
        with contextlib.suppress(ct.NoCard):
            run("wipe", on(path, **{mode: n}), tmp_path)
        seen = found(path)
        states.add(seen.state)
        assert seen.state in (classify.CONFIGURED, classify.PARTIAL_WIPE, classify.BLANK), (
            n, seen.state, seen.detail)
        if seen.state != classify.BLANK:
            with pytest.raises(ct.Refused, match="not blank"):
                run("provision", on(path), tmp_path)  # refused, and no authentication spent
            run("wipe", on(path), tmp_path)
        assert_blank(path)
        # and the card is usable again: provision it, it checks out
        ct.provision(on(path), TEMPLATE, OURS, 1)
        assert_configured(path)
    assert classify.PARTIAL_WIPE in states


def test_refused_provision_on_a_configured_card_spends_no_authentication(tmp_path: Path) -> None:
    path = fresh(tmp_path / "c.json")
    ct.provision(on(path), TEMPLATE, OURS, 1)
    other = keys.derive_keys(bytes(15) + b"\x02", UID, 1)
    for card_keys in (OURS, other):
        reader_before = state_of(path)
        with pytest.raises(ct.Refused, match="not blank"):
            ct.provision(on(path), TEMPLATE, card_keys, 1)
        after = state_of(path)
        assert after.tot_fail_ctr == reader_before.tot_fail_ctr == [0] * 5
        assert after.consecutive_failures == 0


def test_a_foreign_half_provisioned_card_is_refused_after_one_failed_proof(
    tmp_path: Path,
) -> None:
    path = fresh(tmp_path / "c.json")
    other = keys.derive_keys(bytes(15) + b"\x02", UID, 1)
    with pytest.raises(ct.NoCard):  # someone else's provision, cut after its key changes
        ct.provision(on(path, pull_after=22), TEMPLATE, other, 1)
    assert found(path).state == classify.PARTIAL_PROVISION
    journal = ct.Journal(tmp_path / "j")
    for attempt in range(1, ct.MAX_FAILED_AUTHS + 1):
        with pytest.raises(ct.Refused, match=f"Failed attempts recorded: {attempt}"):
            ct.provision(on(path), TEMPLATE, OURS, 1, journal=journal, resume=True)
    with pytest.raises(ct.Refused, match="no more attempts"):
        ct.provision(on(path), TEMPLATE, OURS, 1, journal=journal, resume=True)
    assert sum(state_of(path).tot_fail_ctr) == ct.MAX_FAILED_AUTHS  # the third spent nothing
    # the right keys still finish it
    ct.provision(on(path), TEMPLATE, other, 1, journal=ct.Journal(tmp_path / "j2"), resume=True)


def test_the_journal_records_the_last_step(tmp_path: Path) -> None:
    path = fresh(tmp_path / "c.json")
    journal = ct.Journal(tmp_path / "j")
    with pytest.raises(ct.NoCard):
        ct.provision(on(path, pull_during=22), TEMPLATE, OURS, 1, journal=journal)
    entry = journal.get(UID)
    assert entry.operation == "provision" and entry.status == "interrupted"
    assert entry.step.startswith("ChangeKey key") and not entry.step.endswith("answered")
    assert "K0" not in json.dumps(entry.to_dict()) and OURS.k0.hex() not in json.dumps(
        entry.to_dict())


def test_dry_run_changes_nothing_and_redacts(tmp_path: Path) -> None:
    path = fresh(tmp_path / "c.json")
    before = path.read_bytes()
    steps: list[str] = []
    result = ct.provision(on(path), TEMPLATE, OURS, 1, dry_run=True, plan_out=steps.append)
    assert result.dry_run and result.state == classify.BLANK
    assert any("ChangeKey key 0" in s and "redacted" in s for s in steps)
    assert all(OURS.k0.hex() not in s.lower() for s in steps)
    assert state_of(path).keys == CardState.from_dict(json.loads(before)).keys
