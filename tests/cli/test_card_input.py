"""Bad card state files and the rehearsal options, as a user meets them in a shell: one line on
stderr, exit 2, the file left byte for byte as it was; pulls end in exit 3 with the card keeping
what it wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from station.emulator.card import EmulatedCard
from station.emulator.state import save_state

from .station_cli import run_station

UID = "04a39493cc8680"
ISSUER = "00000000000000000000000000000001"
URL = "lnurlw://pay.example.com/ln"


def _factory(path: Path) -> dict[str, object]:
    state = EmulatedCard.factory(uid=bytes.fromhex(UID)).to_state()
    save_state(path, state)
    return state


def _broken(kind: str, path: Path) -> None:
    state = _factory(path)
    if kind == "non-utf8":
        path.write_bytes(b'{"format": "\xff\xfe"}')
        return
    if kind == "short-key-versions":
        state["key_versions"] = [0, 0, 0]
    elif kind == "version-999":
        state["key_versions"] = [999, 0, 0, 0, 0]
    elif kind == "negative-counter":
        state["files"]["2"]["sdm_read_ctr"] = -1  # type: ignore[index]
    elif kind == "string-version":
        state["key_versions"] = ["1", 0, 0, 0, 0]
    path.write_text(json.dumps(state))


KINDS = ["non-utf8", "short-key-versions", "version-999", "negative-counter", "string-version"]
COMMANDS = [
    ["card", "check"],
    ["card", "wipe", "--issuer-key", ISSUER],
    ["card", "provision", "--url-template", URL, "--issuer-key", ISSUER],
    ["read", "--issuer-key", ISSUER, "--timeout", "1"],
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_bad_state_file_is_one_line_exit_2_and_untouched(
    tmp_path: Path, kind: str, command: list[str]
) -> None:
    path = tmp_path / "card.json"
    _broken(kind, path)
    before = path.read_bytes()
    proc = run_station(*command, "--backend", "emulated", "--card-state", str(path))
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert str(path) in proc.stderr
    assert path.read_bytes() == before


def test_state_is_a_hidden_alias_of_card_state(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    _factory(path)
    proc = run_station("card", "check", "--backend", "emulated", "--state", str(path), "--json")
    assert proc.returncode == 1  # a factory card fails the Bolt Card lines
    assert json.loads(proc.stdout)
    helptext = run_station("card", "check", "--help").stdout
    assert "--card-state" in helptext and "--state " not in helptext


def test_emulate_blank_makes_a_factory_card_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "blank.json"
    proc = run_station("card", "emulate", "--card-state", str(path), "--blank", "--uid", UID,
                       "--json")
    assert proc.returncode == 0, proc.stderr
    state = json.loads(path.read_text())
    assert state["uid"] == UID.upper() and state["key_versions"] == [0] * 5
    assert path.stat().st_mode & 0o777 == 0o600
    again = run_station("card", "emulate", "--card-state", str(path), "--blank")
    assert again.returncode == 2 and "exists" in again.stderr


def test_pull_after_leaves_a_half_written_card_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    _factory(path)
    proc = run_station("card", "provision", "--backend", "emulated", "--card-state", str(path),
                       "--url-template", URL, "--issuer-key", ISSUER, "--pull-after", "22")
    assert proc.returncode == 3, proc.stderr
    assert "left the field" in proc.stderr
    versions = json.loads(path.read_text())["key_versions"]
    assert versions[0] == 0 and versions[1] == 1  # key 1 changed, key 0 not yet


def test_pull_during_the_first_read_apdu_of_a_tap(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    _factory(path)
    proc = run_station("read", "--backend", "emulated", "--card-state", str(path),
                       "--issuer-key", ISSUER, "--pull-during", "1", "--timeout", "1")
    assert proc.returncode == 3
    assert "left the field" in proc.stderr


@pytest.mark.parametrize(
    "extra",
    [["--pull-after", "2", "--pull-during", "2"], ["--pull-during", "0"], ["--pull-after", "x"]],
)
def test_bad_pull_options_are_refused(tmp_path: Path, extra: list[str]) -> None:
    path = tmp_path / "card.json"
    _factory(path)
    proc = run_station("card", "check", "--backend", "emulated", "--card-state", str(path), *extra)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_pull_options_need_the_emulated_backend() -> None:
    proc = run_station("card", "check", "--backend", "pcsc", "--pull-after", "3")
    assert proc.returncode == 2 and "--backend emulated" in proc.stderr


def test_emulate_without_keys_refuses_and_writes_no_state_file(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    proc = run_station("card", "emulate", "--card-state", str(path), "--taps", "3")
    assert proc.returncode == 2
    assert "needs --issuer-key HEX or --keys-out FILE" in proc.stderr
    assert not path.exists()
    ok = run_station("card", "emulate", "--card-state", str(path), "--issuer-key",
                     "00000000000000000000000000000001", "--taps", "3")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.count("lnurlw://") == 3
