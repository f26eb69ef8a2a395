"""An emulated card keeps its keys and SDM counter across runs, and the file is safe to crash on.

Includes the ``station card emulate`` command, whose point is exactly that persistence.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from station.emulator.card import EmulatedCard
from station.emulator.state import StateError, load_state, save_state
from station.ntag424 import crypto

REPO = Path(__file__).resolve().parents[2]
UID = bytes.fromhex("04A0A1A2A3A4A5")
SELECT_APP = bytes.fromhex("00A4040007D276000085010100")
ISSUER = "00112233445566778899AABBCCDDEEFF"


def _sdm_card() -> EmulatedCard:
    """A card whose NDEF file mirrors PICCData/SDMMAC (keys 1/2 zero), set up via its state."""
    url = b"\x00" + b"lnurlw://t.example/?p=" + b"0" * 32 + b"&c=" + b"0" * 16
    record = bytes([0xD1, 0x01, len(url), 0x55]) + url
    data = (len(record).to_bytes(2, "big") + record).ljust(256, b"\0")
    p_at = 6 + url.index(b"p=") + 2  # NLEN (2) + record header (4) precede the payload
    c_at = 6 + url.index(b"c=") + 2
    settings = "4000E0C1FF12" + "".join(x.to_bytes(3, "little").hex() for x in (p_at, c_at, c_at))
    state = EmulatedCard.factory(uid=UID).to_state()
    state["files"]["2"].update(data=data.hex(), settings=settings)
    return EmulatedCard.from_state(state)


def _tap_counter(card: EmulatedCard) -> int:
    card.power_cycle()
    assert card.transceive(SELECT_APP) == b"\x90\x00"
    assert card.transceive(bytes.fromhex("00A4000C02E104")) == b"\x90\x00"
    r = card.transceive(bytes.fromhex("00B0000000"))
    text = r[:-2].decode("latin-1")
    p = bytes.fromhex(text.split("p=")[1][:32])
    picc = crypto.aes_cbc_decrypt(bytes(16), crypto.ZERO_IV, p)
    assert picc[1:8] == UID
    return int.from_bytes(picc[8:11], "little")


def test_counter_and_keys_survive_save_and_load(tmp_path: Path) -> None:
    card = _sdm_card()
    assert [_tap_counter(card) for _ in range(3)] == [1, 2, 3]
    path = tmp_path / "card.json"
    save_state(path, card.to_state())
    again = EmulatedCard.from_state(load_state(path))
    assert again.uid == UID
    assert _tap_counter(again) == 4
    assert again.to_state()["files"] == {
        **card.to_state()["files"],
        "2": {**card.to_state()["files"]["2"], "sdm_read_ctr": 4},
    }


def test_state_is_everything_non_volatile_and_nothing_else() -> None:
    card = EmulatedCard.factory(uid=UID)
    card.transceive(SELECT_APP)
    r = card.transceive(bytes.fromhex("9071000002000000"))
    assert r[-2:] == b"\x91\xaf"
    state = card.to_state()
    assert set(state) >= {"uid", "keys", "key_versions", "files", "tot_fail_ctr", "random_id"}
    assert state["keys"] == ["00" * 16] * 5 and state["key_versions"] == [0] * 5
    reloaded = EmulatedCard.from_state(state)
    # Selection and the half-done authentication were volatile: gone after a reload.
    assert reloaded.transceive(bytes.fromhex("90AF00002000" + "00" * 31 + "00"))[-2:] != b"\x91\x00"
    assert reloaded.to_state() == state


def test_save_is_atomic_private_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "card.json"
    save_state(path, EmulatedCard.factory(uid=UID).to_state())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_bytes()
    with pytest.raises(TypeError):
        save_state(path, {"format": object()})  # not serialisable: must not clobber the file
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["card.json"]


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        json.dumps({"format": "something else"}),
        "[]",
    ],
)
def test_load_rejects_what_is_not_a_card_state(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(StateError):
        load_state(path)


def test_load_rejects_a_corrupt_card_state(tmp_path: Path) -> None:
    good = EmulatedCard.factory(uid=UID).to_state()
    corruptions = [
        {**good, "uid": "04ZZ"},
        {**good, "keys": good["keys"][:4]},
        {**good, "files": {k: v for k, v in good["files"].items() if k != "3"}},
        {**good, "files": {**good["files"], "2": {**good["files"]["2"], "settings": "40"}}},
    ]
    for i, state in enumerate(corruptions):
        path = tmp_path / f"c{i}.json"
        path.write_text(json.dumps(state))
        with pytest.raises(StateError):
            load_state(path)
        with pytest.raises(StateError):
            EmulatedCard.from_state(state)


def _station(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "station", *args],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=60,
    )


def test_cli_emulate_provisions_once_and_continues_the_counter(tmp_path: Path) -> None:
    state = tmp_path / "card.json"
    first = _station("card", "emulate", "--state", str(state), "--uid", UID.hex(),
                     "--issuer-key", ISSUER, "--taps", "2", "--json")
    assert first.returncode == 0, first.stderr
    events = [json.loads(line) for line in first.stdout.splitlines()]
    assert events[0]["provisioned"] is True and events[0]["uid"] == UID.hex().upper()
    assert [e["counter"] for e in events[1:]] == [2, 3]  # 1 was provisioning's read-back
    second = _station("card", "emulate", "--state", str(state), "--taps", "1")
    assert second.returncode == 0, second.stderr
    url = second.stdout.strip()
    assert url.startswith("lnurlw://") and "p=" in url and "c=" in url
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    verify = _station("sun", "verify", "--issuer-key", ISSUER, url)
    assert verify.returncode == 0, verify.stderr
    assert json.loads(verify.stdout)["counter"] == 4


def test_cli_keys_out_writes_a_keys_file_and_never_prints_keys(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    run = _station("card", "emulate", "--state", str(tmp_path / "c.json"), "--keys-out",
                   str(keys_file), "--url-template", "lnurlw://shop.example/w", "--taps", "1")
    assert run.returncode == 0, run.stderr
    saved = json.loads(keys_file.read_text())
    (entry,) = saved["cards"]
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    for name in ("K0", "K1", "K2", "K3", "K4"):
        assert entry[name] not in run.stdout + run.stderr
    state = json.loads((tmp_path / "c.json").read_text())
    assert state["keys"][1].lower() == entry["K1"].lower()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--uid", "zz"], "--uid"),
        (["--issuer-key", "00"], "--issuer-key"),
        ([], "--issuer-key HEX or --keys-out FILE"),
        (["--taps", "-1"], "--taps"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    run = _station("card", "emulate", "--state", str(tmp_path / "c.json"), *args)
    assert run.returncode == 2
    assert message in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_cli_refuses_a_corrupt_state_file(tmp_path: Path) -> None:
    state = tmp_path / "c.json"
    state.write_text("{")
    run = _station("card", "emulate", "--state", str(state), "--issuer-key", ISSUER)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert state.read_text() == "{"
