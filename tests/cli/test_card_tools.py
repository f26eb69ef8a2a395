"""``station card check | provision | wipe`` as an operator runs them: subprocesses on the
emulated backend, exit codes, JSON, refusals, no tracebacks and no key in the output."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from station.cli import main
from station.emulator.card import TEST_ORIGINALITY_PUBLIC_KEY, EmulatedCard
from station.emulator.state import save_state

from .station_cli import run_station

# boltcard/boltcard docs/DETERMINISTIC.md "Test vectors"
ISSUER = "00000000000000000000000000000001"
UID = "04a39493cc8680"
KEYS = {
    "K0": "a29119fcb48e737d1591d3489557e49b",
    "K1": "55da174c9608993dc27bb3f30a4a7314",
    "K2": "f4b404be700ab285e333e32348fa3d3b",
    "K3": "73610ba4afe45b55319691cb9489142f",
    "K4": "addd03e52964369be7f2967736b7bdb5",
}
URL = "lnurlw://pay.example.com/ln"
SECRETS = [ISSUER, *KEYS.values()]


def station(*args: str) -> subprocess.CompletedProcess[str]:
    return run_station(*args)


def clean(proc: subprocess.CompletedProcess[str], *, keys_allowed: bool = False) -> None:
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out
    if not keys_allowed:
        for secret in SECRETS:
            assert secret not in out.lower()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "card.json"
    save_state(path, EmulatedCard.factory(uid=bytes.fromhex(UID)).to_state())
    return path


def emulated(state: Path) -> list[str]:
    return ["--backend", "emulated", "--card-state", str(state)]


def test_provision_check_wipe_check_from_a_shell(tmp_path: Path) -> None:
    state = tmp_path / "new-card.json"  # created factory-fresh by provision
    prov = station("card", "provision", *emulated(state), "--url-template", URL,
                   "--issuer-key", ISSUER, "--json")
    clean(prov)
    assert prov.returncode == 0, prov.stderr
    made = json.loads(prov.stdout)
    assert made["url"].startswith(URL + "?p=") and made["key_version"] == 1
    assert "(redacted)" in made["url"]  # a fresh tap is never printed whole

    check = station("card", "check", *emulated(state), "--issuer-key", ISSUER, "--json")
    clean(check)
    assert check.returncode == 1  # the emulated card is not NXP-signed
    report = json.loads(check.stdout)
    assert all(set(c) == {"check", "result", "detail", "hint"} for c in report)
    failed = [c["check"] for c in report if c["result"] == "fail"]
    assert failed == ["originality_signature"]
    assert all(c["hint"] for c in report if c["result"] == "fail")
    assert "(redacted)" in check.stdout

    signed = station("card", "check", *emulated(state), "--issuer-key", ISSUER,
                     "--signature-key", TEST_ORIGINALITY_PUBLIC_KEY.hex())
    clean(signed)
    assert signed.returncode == 0, signed.stdout
    assert "all checks passed" in signed.stdout

    wipe = station("card", "wipe", *emulated(state), "--issuer-key", ISSUER)
    clean(wipe)
    assert wipe.returncode == 0, wipe.stderr
    assert "wiped" in wipe.stdout

    after = station("card", "check", *emulated(state), "--json")
    clean(after)
    assert after.returncode == 1
    factory = {c["check"]: c for c in json.loads(after.stdout)}
    assert factory["keys_changed"]["detail"] == "factory keys: [0, 1, 2, 3, 4]"
    assert factory["keys_changed"]["result"] == "fail"


def test_human_check_has_one_line_per_check(state: Path) -> None:
    assert main(["card", "provision", *emulated(state), "--url-template", URL,
                 "--issuer-key", ISSUER]) == 0
    proc = station("card", "check", *emulated(state), "--issuer-key", ISSUER)
    clean(proc)
    lines = proc.stdout.splitlines()
    assert lines[0] == f"card {UID.upper()}"
    checks = [line for line in lines if line.startswith(("pass", "warn", "fail"))]
    assert len(checks) == 14
    assert [line.split()[1] for line in checks if line.startswith("fail")] == [
        "originality_signature"
    ]
    assert "not NXP-signed" in proc.stdout
    assert lines[-1] == "1 check(s) failed"


def test_provision_refuses_a_card_that_is_not_blank(state: Path) -> None:
    assert main(["card", "provision", *emulated(state), "--url-template", URL,
                 "--issuer-key", ISSUER]) == 0
    before = state.read_text()
    proc = station("card", "provision", *emulated(state), "--url-template", URL,
                   "--issuer-key", "11" * 16)
    clean(proc)
    assert proc.returncode == 1
    assert "not blank" in proc.stderr and "wipe the card first" in proc.stderr
    assert json.loads(state.read_text())["keys"] == json.loads(before)["keys"]


def test_wipe_with_wrong_keys_is_refused(state: Path, tmp_path: Path) -> None:
    assert main(["card", "provision", *emulated(state), "--url-template", URL,
                 "--issuer-key", ISSUER]) == 0
    wrong = tmp_path / "wipe.json"
    wrong.write_text(json.dumps({"version": 1, "action": "wipe",
                                 **{f"k{i}": "5a" * 16 for i in range(5)}}))
    proc = station("card", "wipe", *emulated(state), "--wipe-json", str(wrong))
    clean(proc)
    assert proc.returncode == 1
    assert "do not verify" in proc.stderr and "not changed" in proc.stderr
    assert json.loads(state.read_text())["key_versions"] == [1] * 5


def test_keys_are_printed_only_on_request(state: Path, tmp_path: Path) -> None:
    keys_out = tmp_path / "keys.json"
    proc = station("card", "provision", *emulated(state), "--url-template", URL,
                   "--issuer-key", ISSUER, "--keys-out", str(keys_out), "--print-keys")
    clean(proc, keys_allowed=True)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert printed["protocol_name"] == "new_bolt_card_response"
    assert {k: printed[k] for k in KEYS} == KEYS  # the published deterministic keys
    assert printed["LNURLW"] == URL
    saved = json.loads(keys_out.read_text())
    assert saved["cards"][0]["uid"] == UID and saved["cards"][0]["K2"] == KEYS["K2"]
    assert keys_out.stat().st_mode & 0o077 == 0

    # the keys file then checks and wipes the card, and a new_bolt_card_response wipes too
    check = station("card", "check", *emulated(state), "--keys", str(keys_out), "--json")
    clean(check)
    assert [c["check"] for c in json.loads(check.stdout) if c["result"] == "fail"] == [
        "originality_signature"
    ]
    response = tmp_path / "response.json"
    response.write_text(proc.stdout)
    wipe = station("card", "wipe", *emulated(state), "--keys-json", str(response), "--json")
    clean(wipe)
    assert wipe.returncode == 0 and json.loads(wipe.stdout)["uid"] == UID.upper()


def test_provision_from_keys_json(state: Path, tmp_path: Path) -> None:
    program = tmp_path / "program.json"
    program.write_text(json.dumps({"protocol_name": "new_bolt_card_response", "LNURLW": URL,
                                   **KEYS, "version": 3}))
    proc = station("card", "provision", *emulated(state), "--url-template", URL,
                   "--keys-json", str(program), "--json")
    clean(proc)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["key_version"] == 3
    check = station("card", "check", *emulated(state), "--k1", KEYS["K1"], "--k2", KEYS["K2"],
                    "--json")
    clean(check)
    lines = {c["check"]: c for c in json.loads(check.stdout)}
    assert lines["sun"]["result"] == "pass" and lines["key_versions"]["result"] == "pass"


@pytest.mark.parametrize(
    "args",
    [
        ["card", "check", "--backend", "emulated"],  # no --state
        ["card", "check", "--backend", "emulated", "--state", "/nonexistent/c.json"],
        ["card", "check", "--backend", "pcsc", "--state", "c.json"],
        ["card", "check", "--backend", "emulated", "--state", "c.json", "--k1", "00" * 16],
        ["card", "check", "--issuer-key", "zz"],
        ["card", "check", "--tracker-url", "http://127.0.0.1:9"],  # no token
        ["card", "provision", "--url-template", "https://x.example/y", "--issuer-key", ISSUER],
        ["card", "provision", "--url-template", URL],  # no keys
        ["card", "provision", "--url-template", URL, "--issuer-key", ISSUER, "--version", "0"],
        ["card", "wipe", "--backend", "emulated", "--state", "c.json"],  # no keys
        ["card", "wipe", "--issuer-key", ISSUER, "--wipe-json", "w.json"],
    ],
)
def test_bad_input_exits_2_without_echoing_keys(args: list[str]) -> None:
    proc = station(*args)
    clean(proc)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.strip()


def test_tracker_unreachable_is_exit_4(state: Path) -> None:
    assert main(["card", "provision", *emulated(state), "--url-template", URL,
                 "--issuer-key", ISSUER]) == 0
    # port 9 (discard) on loopback: nothing listens in a test container
    proc = station("card", "check", *emulated(state), "--issuer-key", ISSUER,
                   "--tracker-url", "http://127.0.0.1:9", "--station-token", "tok-secret",
                   "--signature-key", TEST_ORIGINALITY_PUBLIC_KEY.hex())
    clean(proc)
    assert "tok-secret" not in proc.stdout + proc.stderr
    assert proc.returncode == 4, proc.stdout
    assert "tracker unreachable" in proc.stdout


def test_no_reader_is_an_environment_problem(tmp_path: Path) -> None:
    proc = station("card", "check", "--backend", "nfcpy", "--reader", "tty:nonexistent:pn532",
                   "--timeout", "1")
    clean(proc)
    assert proc.returncode == 4, proc.stderr
    assert "tty:nonexistent:pn532" in proc.stderr
