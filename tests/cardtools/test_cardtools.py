"""The card tools (``station.cardtools``) against the emulated NTAG 424 DNA, in-process.

Keys come from the published Bolt Card deterministic-key vector (boltcard/boltcard
docs/DETERMINISTIC.md), so "the card holds the right keys" is checked against numbers nobody on
this team computed; the SUN URL's ``p`` is decrypted here with plain AES, not with our verifier.
The last test drives the same tools through the real pcscd + vpcd stack.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from station_rig import vpcd_reader_name

from station import cardtools as ct
from station.emulator.card import TEST_ORIGINALITY_PUBLIC_KEY, EmulatedCard
from station.emulator.state import CardState, save_state
from station.emulator.state import load_state as _load_dict
from station.ntag424 import flows
from station.ntag424.keys import KeySet, wipe_json
from station.readers.emulated import EmulatedReader

# boltcard/boltcard docs/DETERMINISTIC.md "Test vectors"
ISSUER = bytes.fromhex("00000000000000000000000000000001")
UID = bytes.fromhex("04a39493cc8680")
PUBLISHED = {
    "k0": "a29119fcb48e737d1591d3489557e49b",
    "k1": "55da174c9608993dc27bb3f30a4a7314",
    "k2": "f4b404be700ab285e333e32348fa3d3b",
    "k3": "73610ba4afe45b55319691cb9489142f",
    "k4": "addd03e52964369be7f2967736b7bdb5",
}


def keyset(values: list[bytes], version: int = 1) -> KeySet:
    k0, k1, k2, k3, k4 = values
    return KeySet(k0, k1, k2, k3, k4, version=version)


PUBLISHED_KEYS = keyset([bytes.fromhex(PUBLISHED[f"k{i}"]) for i in range(5)])
TEMPLATE = "lnurlw://pay.example.com/ln?p=" + "0" * 32 + "&c=" + "0" * 16


def issuer_source(issuer: bytes = ISSUER, version: int = 1) -> ct.KeySource:
    return ct.KeySource(store=ct.issuer_store(issuer, version))


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "card.json"
    save_state(path, EmulatedCard.factory(uid=UID).to_state())
    return path


def load_state(path: Path) -> CardState:
    return CardState.from_dict(_load_dict(path))


def on(state: Path) -> ct.ReaderChoice:
    return ct.ReaderChoice(backend="emulated", timeout=1.0, state=state)


def provisioned(state: Path) -> ct.ProvisionResult:
    return ct.provision(on(state), TEMPLATE, PUBLISHED_KEYS, 1)


def decrypt_p(url: str, k1: bytes) -> tuple[bytes, int]:
    """(UID, counter) from ``p`` with one AES block decryption (PICCData, AN12196 §4.4.2)."""
    p = bytes.fromhex(parse_qs(urlparse(url).query)["p"][0])
    dec = Cipher(algorithms.AES(k1), modes.ECB()).decryptor()
    plain = dec.update(p) + dec.finalize()
    assert plain[0] == 0xC7, "PICCDataTag of a UID + counter mirror"
    return plain[1:8], int.from_bytes(plain[8:11], "little")


def lines(result: ct.CheckResult) -> dict[str, bool]:
    return {c.name: c.ok for c in result.report.checks}


# -- provision --------------------------------------------------------------------------------


def test_provision_with_issuer_key_writes_the_published_deterministic_keys(state: Path) -> None:
    store = ct.issuer_store(ISSUER, 1)

    def derived(uid: bytes) -> KeySet:
        keys = store.keys_for(uid)
        assert keys is not None
        return keys

    result = ct.provision(on(state), TEMPLATE, derived, 1)
    saved = load_state(state)
    assert [k.hex() for k in saved.keys] == [PUBLISHED[f"k{i}"] for i in range(5)]
    assert saved.key_versions == [1] * 5
    assert result.uid == UID
    assert decrypt_p(result.url, PUBLISHED_KEYS.k1) == (UID, result.counter)


def test_provisioned_card_taps_a_url_of_the_template(state: Path) -> None:
    result = provisioned(state)
    card = EmulatedCard.from_state(_load_dict(state))
    reader = EmulatedReader()
    reader.present(card)
    link = reader.wait_for_card(1)
    assert link is not None
    url = ct.run_flow(link, flows.read_sun_url())
    assert url.startswith("lnurlw://pay.example.com/ln?p=")
    uid, counter = decrypt_p(url, PUBLISHED_KEYS.k1)
    assert uid == UID and counter == result.counter + 1


def test_provision_refuses_a_card_that_is_not_blank_and_leaves_it_alone(state: Path) -> None:
    provisioned(state)
    before = load_state(state)
    other = keyset([bytes([i + 1]) * 16 for i in range(5)], version=2)
    with pytest.raises(ct.Refused, match="not blank"):
        ct.provision(on(state), TEMPLATE, other, 2)
    after = load_state(state)
    assert after.keys == before.keys and after.key_versions == before.key_versions


def test_provision_creates_a_factory_card_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "new.json"
    choice = ct.ReaderChoice(backend="emulated", state=path, create_state=True)
    result = ct.provision(choice, TEMPLATE, lambda uid: keyset([uid + bytes(9)] * 5), 1)
    assert load_state(path).uid == result.uid


# -- check ------------------------------------------------------------------------------------


def test_check_of_a_provisioned_card_fails_only_the_nxp_signature(state: Path) -> None:
    provisioned(state)
    result = ct.check(on(state), issuer_source())
    status = lines(result)
    failed = [name for name, ok in status.items() if not ok]
    assert failed == ["originality_signature"]
    for name in ("ntag424_dna", "ndef_url", "sdm", "ndef_access", "sun", "key0",
                 "keys_changed", "key_versions"):
        assert status[name], name
    sig = next(c for c in result.report.checks if c.name == "originality_signature")
    assert "not NXP-signed" in sig.detail
    assert result.uid == UID and not result.ok


def test_check_passes_everything_with_the_emulators_signature_key(state: Path) -> None:
    provisioned(state)
    result = ct.check(on(state), issuer_source(), signature_key=TEST_ORIGINALITY_PUBLIC_KEY)
    assert result.ok, [c for c in result.report.checks if not c.ok]


def test_check_with_k1_k2_only_verifies_sun(state: Path) -> None:
    provisioned(state)
    source = ct.KeySource(k1k2=(PUBLISHED_KEYS.k1, PUBLISHED_KEYS.k2))
    result = ct.check(on(state), source)
    assert lines(result)["sun"] is True
    assert "key0" not in lines(result)


def test_check_with_wrong_keys_fails_sun_and_key0(state: Path) -> None:
    provisioned(state)
    result = ct.check(on(state), issuer_source(bytes(15) + b"\x02"))
    status = lines(result)
    assert status["sun"] is False and status["key0"] is False
    assert status["sdm"] is True  # the layout is still right: only the keys are not ours


def test_check_with_the_wrong_key_version_fails_the_version_line(state: Path) -> None:
    provisioned(state)
    assert lines(ct.check(on(state), issuer_source(version=2)))["key_versions"] is False


def test_check_with_a_keys_file_that_lacks_the_card(state: Path, tmp_path: Path) -> None:
    provisioned(state)
    keys_file = tmp_path / "keys.json"
    other = {"uid": "04000000000001", **{f"k{i}": "11" * 16 for i in range(5)}}
    keys_file.write_text(json.dumps({"cards": [other]}))
    result = ct.check(on(state), ct.KeySource(store=ct.file_store(keys_file, None, None)))
    sun = next(c for c in result.report.checks if c.name == "sun")
    assert not sun.ok and "none of the keys" in sun.detail


def test_check_of_a_factory_card_shows_factory_state(state: Path) -> None:
    result = ct.check(on(state), ct.KeySource())
    assert result.report.factory_keys == {n: True for n in range(5)}
    assert result.report.key_versions == {n: 0 for n in range(5)}
    status = lines(result)
    assert status["ntag424_dna"] is True
    assert status["keys_changed"] is False and status["sdm"] is False
    assert status["sun"] is False


def test_check_changes_nothing_but_the_read_counter(state: Path) -> None:
    provisioned(state)
    before = load_state(state)
    ct.check(on(state), issuer_source())
    after = load_state(state)
    assert after.keys == before.keys and after.key_versions == before.key_versions
    assert after.files[2].sdm_read_ctr == before.files[2].sdm_read_ctr + 1
    assert after.files[2].data == before.files[2].data


class FakeTracker:
    def __init__(self, status: str, last: int | None, fail: bool = False) -> None:
        self.view = ct.TrackerView(status, last)
        self.fail = fail
        self.asked: list[str] = []

    def __call__(self, uid_hex: str) -> ct.TrackerView:
        self.asked.append(uid_hex)
        if self.fail:
            raise ct.EnvironmentProblem("connection refused")
        return self.view


@pytest.mark.parametrize(
    ("status", "last", "ok"),
    [
        ("unknown", None, True),
        ("active", 1, True),  # provision read once (1); check reads again (2)
        ("active", 2, False),  # the tracker saw this counter already: a clone or a rollback
        ("active", 50, False),
        ("blocked", 1, False),
        ("wiped", 1, False),
    ],
)
def test_check_compares_the_counter_with_the_tracker(
    state: Path, status: str, last: int | None, ok: bool
) -> None:
    provisioned(state)
    tracker = FakeTracker(status, last)
    result = ct.check(on(state), issuer_source(), tracker=tracker)
    assert tracker.asked == [UID.hex().upper()]
    assert lines(result)["tracker_counter"] is ok
    assert result.report.sun_counter == 2


def test_an_unreachable_tracker_is_an_environment_problem(state: Path) -> None:
    provisioned(state)
    result = ct.check(on(state), issuer_source(), tracker=FakeTracker("active", 0, fail=True))
    assert result.environment_problem is not None
    assert lines(result)["tracker_counter"] is False


def test_check_against_the_tracker_database(state: Path, tmp_path: Path) -> None:
    """The real tracker schema and service: the counter it stored for a tap."""
    from datetime import UTC, datetime

    from tracker import migrations
    from tracker.db import make_engine, make_sessionmaker
    from tracker.models import TapCreate, TapOutcome
    from tracker.services import stations, taps

    url = f"sqlite:///{tmp_path / 'tracker.sqlite'}"
    engine = make_engine(url)
    migrations.upgrade(engine)
    with make_sessionmaker(engine)() as session:
        stations.create_station(session, name="desk")
    provisioned(state)
    first = ct.check(on(state), issuer_source(), tracker=ct.database_tracker(url))
    assert lines(first)["tracker_counter"] is True  # never seen
    with make_sessionmaker(engine)() as session:
        tap = TapCreate(
            idempotency_key=f"{UID.hex().upper()}:9", card_uid=UID.hex(), counter=9,
            outcome=TapOutcome.accepted, station_time=datetime.now(UTC),
        )
        taps.record_tap(session, station_name="desk", tap=tap)
    engine.dispose()
    second = ct.check(on(state), issuer_source(), tracker=ct.database_tracker(url))
    assert second.tracker == ct.TrackerView("active", 9)
    assert lines(second)["tracker_counter"] is False  # card at 3, tracker saw 9


def test_check_json_holds_no_key(state: Path) -> None:
    provisioned(state)
    text = json.dumps(ct.check(on(state), issuer_source()).to_dict()).lower()
    for value in [*PUBLISHED.values(), ISSUER.hex()]:
        assert value not in text
    assert '"originality_signature"' in text


# -- wipe -------------------------------------------------------------------------------------


def test_wipe_with_wrong_keys_is_refused_and_the_card_unchanged(state: Path) -> None:
    provisioned(state)
    before = load_state(state)
    wrong = keyset([bytes([0x5A]) * 16] * 5)
    with pytest.raises(ct.Refused, match="not changed"):
        ct.wipe(on(state), ct.KeySource(fixed=wrong))
    # K1/K2 right but K0 wrong: SUN verifies, key 0 refuses, still nothing changes
    half = KeySet(bytes(16), PUBLISHED_KEYS.k1, PUBLISHED_KEYS.k2, bytes(16), bytes(16))
    with pytest.raises(ct.Refused, match="not changed"):
        ct.wipe(on(state), ct.KeySource(fixed=half))
    after = load_state(state)
    assert after.keys == before.keys and after.key_versions == before.key_versions


def test_wipe_restores_the_factory_card(state: Path) -> None:
    provisioned(state)
    result = ct.wipe(on(state), issuer_source())
    saved = load_state(state)
    assert saved.keys == [bytes(16)] * 5 and saved.key_versions == [0] * 5
    assert result.uid == UID and result.last_counter >= 1
    factory = EmulatedCard.factory(uid=UID).to_state()["files"]["2"]
    assert _load_dict(state)["files"]["2"]["settings"] == factory["settings"]
    # and it can be provisioned again
    provisioned(state)


def test_wipe_from_a_wipe_json(state: Path, tmp_path: Path) -> None:
    provisioned(state)
    path = tmp_path / "wipe.json"
    path.write_text(json.dumps(wipe_json(PUBLISHED_KEYS)))
    ct.wipe(on(state), ct.KeySource(fixed=ct.load_wipe_keys(path)))
    assert load_state(state).keys == [bytes(16)] * 5


def test_wipe_of_a_blank_card_is_refused(state: Path) -> None:
    with pytest.raises(ct.Refused):
        ct.wipe(on(state), issuer_source())


# -- readers and inputs -----------------------------------------------------------------------


def test_no_card_within_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    from station.readers import registry

    monkeypatch.setattr(registry, "open_reader", lambda backend, name="": EmulatedReader())
    with pytest.raises(ct.NoCard), ct.card_on_reader(ct.ReaderChoice("nfcpy", timeout=0.05)):
        pass


def test_card_pulled_mid_exchange_is_no_card_and_the_state_is_kept(state: Path) -> None:
    provisioned(state)

    def pulled(apdu: bytes) -> bytes:
        from station.readers.base import CardRemoved

        raise CardRemoved("gone")

    with pytest.raises(ct.NoCard, match="left the field"), ct.card_on_reader(on(state)) as link:
        link.transceive = pulled  # type: ignore[method-assign]
        link.transceive(b"\x00")
    assert load_state(state).key_versions == [1] * 5


@pytest.mark.parametrize(
    ("choice", "error"),
    [
        (ct.ReaderChoice("emulated"), ct.BadInput),  # no --state
        (ct.ReaderChoice("emulated", state=Path("/nonexistent/card.json")), ct.BadInput),
        (ct.ReaderChoice("smartcard"), ct.BadInput),
        (ct.ReaderChoice("emulated", timeout=0, state=Path("x")), ct.BadInput),
    ],
)
def test_bad_reader_choices(choice: ct.ReaderChoice, error: type[Exception]) -> None:
    with pytest.raises(error), ct.card_on_reader(choice):
        pass


def test_bad_inputs_never_echo_a_key(tmp_path: Path) -> None:
    secret = "00112233445566778899aabbccddeeXX"
    with pytest.raises(ct.BadInput) as info:
        ct.parse_hex(secret, "--issuer-key", 16)
    assert secret not in str(info.value)
    bad = tmp_path / "keys.json"
    bad.write_text(json.dumps({"K0": "ab" * 16, "LNURLW": "lnurlw://x/y"}))
    with pytest.raises(ct.BadInput) as info:
        ct.load_program(bad)
    assert "ab" * 16 not in str(info.value)
    with pytest.raises(ct.BadInput):
        ct.url_template("https://pay.example.com/ln")
    assert ct.url_template("lnurlw://a.example/b") == "lnurlw://a.example/b?p=" + "0" * 32 + (
        "&c=" + "0" * 16
    )


def test_keys_out_refuses_a_file_that_is_not_a_keys_file(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    path.write_text("[1, 2]")
    with pytest.raises(ct.BadInput, match="cards"):
        ct.check_keys_file(path)
    with pytest.raises(ct.BadInput, match="directory"):
        ct.check_keys_file(tmp_path / "missing" / "k.json")


# -- the real pcscd + vpcd stack ----------------------------------------------------------------


def test_check_against_a_live_tracker_over_http(state: Path, tmp_path: Path) -> None:
    """The station token and the real ``/api/v1/cards/{uid}/status`` route."""
    from tracker_live import LiveTracker

    tracker = LiveTracker(tmp_path)
    tracker.start()
    try:
        token = tracker.add_station("desk")
        provisioned(state)
        result = ct.check(on(state), issuer_source(), tracker=ct.http_tracker(tracker.url, token))
        assert result.tracker == ct.TrackerView("unknown", None)
        assert lines(result)["tracker_counter"] is True
        wrong = ct.http_tracker(tracker.url, "wrong-token-4711")
        refused = ct.check(on(state), issuer_source(), tracker=wrong)
        assert refused.environment_problem is not None and "401" in refused.environment_problem
        assert "wrong-token-4711" not in json.dumps(refused.to_dict())
    finally:
        tracker.close()


@pytest.mark.pcsc
def test_provision_check_wipe_through_pcscd_and_vpcd(
    pcscd: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same card tools through pyscard, pcscd and the vpcd driver: a real reader stack."""
    from station.emulator.bridges.vpcd import VpcdBridge

    slot = "Virtual PCD 00 00"
    vpcd_reader_name(slot)
    card = EmulatedCard.factory(uid=UID)
    choice = ct.ReaderChoice(backend="pcsc", reader=slot, timeout=10.0)
    bridge = VpcdBridge(card)
    bridge.insert()
    try:
        result = ct.provision(choice, TEMPLATE, PUBLISHED_KEYS, 1)
        assert card.to_state()["keys"] == [PUBLISHED[f"k{i}"].upper() for i in range(5)]
        assert decrypt_p(result.url, PUBLISHED_KEYS.k1)[0] == UID

        checked = ct.check(choice, issuer_source())
        assert [n for n, ok in lines(checked).items() if not ok] == ["originality_signature"]
        # and the command line over the same reader
        from station.cli import main

        capsys.readouterr()
        code = main(["card", "check", "--backend", "pcsc", "--reader", slot, "--json",
                     "--issuer-key", ISSUER.hex(), "--trust-test-signature",
                     "--allowed-host", "pay.example.com"])
        report = json.loads(capsys.readouterr().out)
        assert code == 0 and {c["result"] for c in report} == {"pass"}, report
        # taps verify: two reads, counters rising, each SUN verifies with K1/K2
        counters = []
        for _ in range(2):
            with ct.card_on_reader(choice) as link:
                url = ct.run_flow(link, flows.read_sun_url())
            uid, counter = decrypt_p(url, PUBLISHED_KEYS.k1)
            assert uid == UID
            counters.append(counter)
        assert counters[1] == counters[0] + 1

        ct.wipe(choice, issuer_source())
        with ct.card_on_reader(choice) as link:
            assert ct.run_flow(link, ct.classify_flow(None)).state == "blank"
        factory = ct.check(choice, ct.KeySource())
        assert factory.report.factory_keys == {n: True for n in range(5)}
        assert factory.report.key_versions == {n: 0 for n in range(5)}
        assert lines(factory)["sdm"] is False
    finally:
        bridge.close()
    saved = card.to_state()
    assert saved["keys"] == ["00" * 16] * 5
    with pytest.raises(ct.NoCard):  # card gone: no card within the timeout
        ct.check(ct.ReaderChoice(backend="pcsc", reader=slot, timeout=0.5), ct.KeySource())
