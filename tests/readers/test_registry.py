"""Opening readers by backend + name substring, and ``station readers``."""

from __future__ import annotations

import json

import pytest
from pcscd_harness import Pcscd

from station.cli import EXIT_ENVIRONMENT, EXIT_OK, main
from station.readers import registry
from station.readers.base import ReaderUnavailable
from station.readers.emulated import EmulatedReader
from station.readers.nfcpy_reader import NfcpyReader
from station.readers.pcsc import PcscReader


def test_emulated_backend_opens_without_hardware() -> None:
    reader = registry.open_reader("emulated", "Counter 2")
    assert isinstance(reader, EmulatedReader) and reader.name == "Counter 2"


def test_unknown_backend_is_a_usage_error() -> None:
    with pytest.raises(ValueError, match="pcsc, nfcpy, emulated"):
        registry.open_reader("bluetooth")


def test_nfcpy_paths_open_as_given_and_lazily() -> None:
    reader = registry.open_reader("nfcpy", "udp:127.0.0.1:9")
    assert isinstance(reader, NfcpyReader) and reader.path == "udp:127.0.0.1:9"


@pytest.mark.pcsc
def test_pcsc_reader_by_case_insensitive_substring(pcscd: Pcscd) -> None:
    reader = registry.open_reader("pcsc", "virtual pcd 00 01")
    assert isinstance(reader, PcscReader) and reader.name == "Virtual PCD 00 01"
    with pytest.raises(ReaderUnavailable, match="Virtual PCD 00 00"):
        registry.open_reader("pcsc", "ACR1252")


@pytest.mark.pcsc
def test_cli_lists_pcsc_readers_as_json(pcscd: Pcscd, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["readers", "--json"]) == EXIT_OK
    out = json.loads(capsys.readouterr().out)
    names = [(r["backend"], r["name"]) for r in out["readers"]]
    assert ("pcsc", "Virtual PCD 00 00") in names
    assert out["backends"]["pcsc"] == {"available": True, "error": None}


def test_cli_without_readers_explains_and_exits_4(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_service() -> list[registry.ReaderInfo]:
        raise ReaderUnavailable("connecting to pcscd: 0x8010001D; is pcscd running?")

    monkeypatch.setattr(registry, "_pcsc_readers", no_service)
    monkeypatch.setattr(registry, "_nfcpy_readers", lambda: [])
    assert main(["readers"]) == EXIT_ENVIRONMENT
    captured = capsys.readouterr()
    assert "no readers found" in captured.out
    assert "pcsc: connecting to pcscd" in captured.err
