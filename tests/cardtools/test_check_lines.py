"""``station card check`` must fail what a careless check passes: a URL that is not lnurlw://,
a host off the allow-list, a garbage CC file, key 0 still the factory key at version 01, and a
SUN URL copied from another card. And it never shows a fresh p=/c= whole."""

from __future__ import annotations

import json
from pathlib import Path

from station import cardtools as ct
from station.emulator.card import TEST_ORIGINALITY_PUBLIC_KEY, EmulatedCard
from station.emulator.state import save_state
from station.ntag424 import commands as cmd
from station.ntag424 import flows, keys, ndef

ISSUER = bytes.fromhex("00000000000000000000000000000001")
UID = bytes.fromhex("04a39493cc8680")
OTHER_UID = bytes.fromhex("04000000000099")
OURS = keys.derive_keys(ISSUER, UID, 1)
TEMPLATE = ct.url_template("lnurlw://pay.example.com/ln")


def on(path: Path) -> ct.ReaderChoice:
    return ct.ReaderChoice(backend="emulated", timeout=1.0, state=path)


def configured(path: Path, template: str = TEMPLATE) -> EmulatedCard:
    card = EmulatedCard.factory(uid=UID)
    flows.drive(flows.provision_bolt_card(template, OURS, lambda n: bytes(n), key_version=1),
                card.transceive)
    card.power_cycle()
    save_state(path, card.to_state())
    return card


def lines(path: Path, **kw: object) -> dict[str, dict[str, str]]:
    result = ct.check(on(path), ct.KeySource(fixed=OURS),
                      signature_key=TEST_ORIGINALITY_PUBLIC_KEY, **kw)  # type: ignore[arg-type]
    return {c["check"]: c for c in result.to_dict()["checks"]}


def test_a_good_card_passes_and_its_url_is_redacted(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    configured(path)
    result = ct.check(on(path), ct.KeySource(fixed=OURS),
                      signature_key=TEST_ORIGINALITY_PUBLIC_KEY, allowed_hosts=["pay.example.com"])
    out = result.to_dict()
    assert result.ok, [c for c in out["checks"] if c["result"] != "pass"]
    assert "(redacted)" in out["url"]
    assert all("(redacted)" in c["detail"] for c in out["checks"] if c["check"] == "ndef_url")
    random_line = next(c for c in out["checks"] if c["check"] == "random_uid")
    assert random_line["detail"].startswith("off")
    assert sum(json.loads(path.read_text())["tot_fail_ctr"]) == 0  # nothing failed


def test_host_off_the_allow_list_fails(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    configured(path)
    got = lines(path, allowed_hosts=["other.example"])
    assert got["allowed_host"]["result"] == "fail" and got["allowed_host"]["hint"]
    assert lines(path)["allowed_host_unset"]["result"] == "warn"


def test_a_url_that_is_not_lnurlw_fails(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    configured(path, ndef.bolt_card_template("https://pay.example.com/ln"))
    assert lines(path)["url_scheme"]["result"] == "fail"


def test_a_garbage_cc_file_fails(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    configured(path)
    state = json.loads(path.read_text())
    size = len(state["files"]["1"]["data"]) // 2
    state["files"]["1"]["data"] = ("5A" * size)
    path.write_text(json.dumps(state))
    assert lines(path)["cc_file"]["result"] == "fail"


def test_key0_factory_at_version_01_fails(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    card = configured(path)
    flows.drive(cmd.iso_select_application(), card.transceive)
    session = flows.drive(flows.authenticate(0, OURS.k0, lambda n: bytes(n)), card.transceive)
    flows.drive(cmd.change_key(session, 0, bytes(16), 1), card.transceive)
    card.power_cycle()
    save_state(path, card.to_state())
    result = ct.check(on(path), ct.KeySource(fixed=OURS),
                      signature_key=TEST_ORIGINALITY_PUBLIC_KEY)
    got = {c["check"]: c for c in result.to_dict()["checks"]}
    assert got["keys_changed"]["result"] == "fail"
    assert "factory keys: [0]" in got["keys_changed"]["detail"]
    assert not result.ok


def test_a_sun_url_copied_from_another_card_fails(tmp_path: Path) -> None:
    source = tmp_path / "a.json"
    card = configured(source)
    url = flows.drive(flows.read_sun_url(), card.transceive)
    clone = EmulatedCard.factory(uid=OTHER_UID)
    state = clone.to_state()
    data = ndef.ndef_file(ndef.uri_record(url))
    state["files"]["2"]["data"] = (data + bytes(256 - len(data))).hex().upper()
    path = tmp_path / "clone.json"
    save_state(path, state)
    result = ct.check(on(path), ct.KeySource(fixed=OURS),
                      signature_key=TEST_ORIGINALITY_PUBLIC_KEY)
    got = {c["check"]: c for c in result.to_dict()["checks"]}
    assert got["sun_uid"]["result"] == "fail" and "clone" in got["sun_uid"]["hint"]
