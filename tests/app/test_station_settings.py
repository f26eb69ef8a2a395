"""Station settings: TOML + STATION_* env, typed errors, secrets that do not print."""

from __future__ import annotations

from pathlib import Path

import pytest

from station.settings import ReaderSpec, SettingsError, load_settings

ISSUER = "00112233445566778899aabbccddeeff"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "station.toml"
    path.write_text(text)
    return path


def test_toml_file_then_env_overrides(tmp_path: Path) -> None:
    cfg = write(tmp_path, f"""
station_name = "till-1"
allowed_hosts = ["Pay.Example.com"]
outbox = "spool/outbox.sqlite"
debounce = 0.5
[[readers]]
backend = "pcsc"
name = "ACR122"
[[readers]]
backend = "nfcpy"
name = "usb"
[keys]
file = "cards.json"
issuer_key = "{ISSUER}"
issuer_key_version = 2
[tracker]
url = "http://127.0.0.1:8080/"
token = "tok-secret"
""")
    s = load_settings(cfg, env={"STATION_DEBOUNCE": "0.1", "STATION_LOG_FORMAT": "json"})
    assert s.station_name == "till-1"
    assert s.readers == (ReaderSpec("pcsc", "ACR122"), ReaderSpec("nfcpy", "usb"))
    assert s.allowed_hosts == ("pay.example.com",)
    assert s.host_allowed("pay.example.com") and not s.host_allowed("evil.example.com")
    assert s.outbox_path == tmp_path / "spool" / "outbox.sqlite"  # relative to the file
    assert s.keys.keys_file == tmp_path / "cards.json"
    assert s.keys.issuer_key is not None and s.keys.issuer_key.reveal() == ISSUER
    assert s.keys.issuer_key_version == 2
    assert (s.debounce, s.log_format) == (0.1, "json")
    assert (s.tracker.mode, s.tracker.url) == ("http", "http://127.0.0.1:8080")
    assert ISSUER not in repr(s) and "tok-secret" not in repr(s)


def test_env_only(tmp_path: Path) -> None:
    s = load_settings(env={
        "STATION_NAME": "kiosk", "STATION_READERS": "emulated:,pcsc:ACS",
        "STATION_DATABASE_URL": "sqlite:///x.sqlite", "STATION_ISSUER_KEY": ISSUER,
    })
    assert s.readers == (ReaderSpec("emulated", ""), ReaderSpec("pcsc", "ACS"))
    assert s.tracker.mode == "direct"
    assert s.host_allowed("anything.example")  # empty allow-list admits any host


@pytest.mark.parametrize(
    ("text", "env", "needle"),
    [
        ('log_format = "xml"', {}, "log_format"),
        ("[[readers]]\nbackend = 'usb'", {}, "backend"),
        ("debounce = -1", {}, "debounce"),
        ("[keys]\nissuer_key = 'abcd'", {}, "issuer_key"),
        ("[tracker]\nurl = 'http://x'", {}, "token"),
        ("not toml = = =", {}, "TOML"),
        ("", {"STATION_DEBOUNCE": "soon"}, "debounce"),
    ],
)
def test_bad_settings_say_what_to_fix(tmp_path: Path, text: str, env: dict, needle: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(write(tmp_path, text), env=env)
    assert needle in str(err.value)


def test_bad_issuer_key_is_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(env={"STATION_ISSUER_KEY": "ff" * 15 + "zz"})
    assert "ff" * 15 not in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", env={})
