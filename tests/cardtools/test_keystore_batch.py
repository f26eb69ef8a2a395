"""The encrypted key store and batch provisioning: random keys are in the store before the card
is written, the file is unreadable without the master key, and 20 cards go through in a row."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from station import cardtools as ct
from station.cardtools import classify
from station.cardtools.keystore import KeyStoreFile, new_master_key, parse_keys_json
from station.cli import main
from station.emulator.card import EmulatedCard
from station.emulator.state import CardState, save_state
from station.ntag424 import keys

URL = "lnurlw://pay.example.com/ln"


def card(path: Path, n: int) -> Path:
    save_state(path, EmulatedCard.factory(uid=bytes([4, 0, 0, 0, 0, 0, n])).to_state())
    return path


def test_the_store_is_encrypted_at_rest_and_mode_0600(tmp_path: Path) -> None:
    master = new_master_key().encode()
    store = KeyStoreFile(tmp_path / "ks", master)
    ks = keys.KeySet(*(os.urandom(16) for _ in range(5)))
    store.put(b"\x04" * 7, ks, URL)
    raw = (tmp_path / "ks").read_text()
    assert ks.k0.hex() not in raw.lower() and "04040404" not in raw
    assert (tmp_path / "ks").stat().st_mode & 0o777 == 0o600
    assert KeyStoreFile(tmp_path / "ks", master).keys_for(b"\x04" * 7) == ks
    with pytest.raises(ct.BadInput, match="cannot decrypt"):
        KeyStoreFile(tmp_path / "ks", new_master_key().encode())


def test_import_and_export_round_trip(tmp_path: Path) -> None:
    store = KeyStoreFile(tmp_path / "ks", new_master_key().encode())
    uid = bytes.fromhex("04a39493cc8680")
    btcpay = {"LNURLW": URL, **{f"K{n}": f"{n:02x}" * 16 for n in range(5)}}
    store.import_json(uid, btcpay)
    response = store.export(uid, "response")
    assert parse_keys_json(response, "x").keys == store.keys_for(uid)
    assert response["LNURLW"] == URL
    wipe = store.export(uid, "wipe")
    assert wipe["action"] == "wipe" and keys.parse_wipe_json(wipe) == store.keys_for(uid)


def test_random_keys_are_stored_before_the_card_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATION_KEYSTORE_KEY", new_master_key())
    path = card(tmp_path / "c.json", 1)
    ks_path = tmp_path / "ks"
    # Pulled right after the first key change: the key store already has the keys.
    code = main(["card", "provision", "--backend", "emulated", "--card-state", str(path),
                 "--url-template", URL, "--random-keys", "--keystore", str(ks_path),
                 "--journal", str(tmp_path / "j"), "--pull-after", "21"])
    assert code == 3
    saved = CardState.from_dict(json.loads(path.read_text()))
    assert saved.key_versions[1] == 1
    from station.cardtools.keystore import master_key

    store = KeyStoreFile(ks_path, master_key())
    held = store.keys_for(saved.uid)
    assert held is not None and held.k1 == saved.keys[1]
    # the wipe finds its keys in the store and brings the card back
    assert main(["card", "wipe", "--backend", "emulated", "--card-state", str(path),
                 "--from-keystore", "--keystore", str(ks_path),
                 "--journal", str(tmp_path / "j")]) == 0
    assert CardState.from_dict(json.loads(path.read_text())).key_versions == [0] * 5


def test_keys_json_lnurlw_is_the_url_and_a_conflicting_template_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = card(tmp_path / "c.json", 2)
    kj = tmp_path / "k.json"
    kj.write_text(json.dumps({"LNURLW": "lnurlw://btcpay.example/boltcards/balance",
                              **{f"K{n}": f"1{n}" * 16 for n in range(5)}}))
    base = ["card", "provision", "--backend", "emulated", "--card-state", str(path),
            "--keys-json", str(kj), "--journal", str(tmp_path / "j")]
    assert main([*base, "--url-template", URL]) == 2
    assert "differ" in capsys.readouterr().err
    assert main([*base, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["lnurlw"] == "lnurlw://btcpay.example/boltcards/balance"
    assert "…(redacted)" in out["url"]


def test_a_batch_of_20_cards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STATION_KEYSTORE_KEY", new_master_key())
    folder = tmp_path / "cards"
    folder.mkdir()
    for n in range(20):
        card(folder / f"card-{n:02d}.json", n)
    ks_path = tmp_path / "ks"
    code = main(["card", "provision", "--backend", "emulated", "--card-state", str(folder),
                 "--batch", "--url-template", URL, "--random-keys", "--keystore", str(ks_path),
                 "--journal", str(tmp_path / "j")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "[20/20]" in out and "summary: 20 provisioned, 0 refused, 20 cards seen" in out
    from station.cardtools.keystore import master_key

    store = KeyStoreFile(ks_path, master_key())
    assert len(store) == 20
    # a second pass refuses all 20 (they are configured now) and says so, spending nothing
    assert main(["card", "provision", "--backend", "emulated", "--card-state", str(folder),
                 "--batch", "--url-template", URL, "--random-keys", "--keystore", str(ks_path),
                 "--journal", str(tmp_path / "j")]) == 1
    assert "summary: 0 provisioned, 20 refused" in capsys.readouterr().out
    for f in folder.glob("*.json"):
        saved = CardState.from_dict(json.loads(f.read_text()))
        assert saved.tot_fail_ctr == [0] * 5
        seen = ct.KeySource(fixed=store.keys_for(saved.uid))
        result = ct.wipe(ct.ReaderChoice(backend="emulated", state=f), seen)
        assert result.found == classify.CONFIGURED


def test_keystore_cli_never_pipes_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STATION_KEYSTORE_KEY", new_master_key())
    src = tmp_path / "in.json"
    src.write_text(json.dumps({"LNURLW": URL, **{f"K{n}": f"a{n}" * 16 for n in range(5)}}))
    ks = ["--keystore", str(tmp_path / "ks")]
    uid = "04a39493cc8680"
    assert main(["card", "keystore", "import", *ks, "--uid", uid, str(src)]) == 0
    assert main(["card", "keystore", "export", *ks, "--uid", uid, "--show"]) == 2
    assert main(["card", "keystore", "export", *ks, "--uid", uid, "--format", "wipe",
                 "--out", str(tmp_path / "w.json")]) == 0
    assert "a0" * 16 not in capsys.readouterr().out
    assert json.loads((tmp_path / "w.json").read_text())["k0"] == "a0" * 16
    assert (tmp_path / "w.json").stat().st_mode & 0o777 == 0o600
