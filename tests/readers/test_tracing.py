"""APDU tracing: what a trace shows, what it must never show, and that it counts."""

from __future__ import annotations

import logging
import os

import pytest

from station.emulator.card import EmulatedCard
from station.ntag424.flows import authenticate, drive, read_sun_url
from station.readers.base import CardLink, CardRemoved
from station.readers.emulated import EmulatedReader
from station.readers.tracing import TracingLink

from .fakes import bolt_card

h = bytes.fromhex
SECRET = h("A1A2A3A4A5A6A7A8A9AAABACADAEAFB0")


class Scripted:
    """Answers from a list, so each test controls the exact response bytes."""

    def __init__(self, *answers: bytes) -> None:
        self.answers = list(answers)
        self.closed = False

    def transceive(self, apdu: bytes) -> bytes:
        return self.answers.pop(0)

    def close(self) -> None:
        self.closed = True


def _trace(caplog: pytest.LogCaptureFixture, link: CardLink, *apdus: bytes) -> list[str]:
    tracer = TracingLink(link)
    with caplog.at_level(logging.DEBUG, logger="station.readers.trace"):
        for apdu in apdus:
            tracer.transceive(apdu)
    assert tracer.apdus == len(apdus)
    return [r.getMessage() for r in caplog.records if r.name == "station.readers.trace"]


def _spaced(data: bytes) -> str:
    return data.hex(" ").upper()


def test_select_and_read_are_shown_in_full(caplog: pytest.LogCaptureFixture) -> None:
    lines = _trace(
        caplog,
        Scripted(h("9000"), h("0102039000")),
        h("00A4040007D276000085010100"),
        h("00B0000003"),
    )
    assert lines == [
        "> 00 A4 04 00 07 D2 76 00 00 85 01 01 00",
        "< 90 00",
        "> 00 B0 00 00 03",
        "< 01 02 03 90 00",
    ]


def test_change_key_and_update_binary_data_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    change_key = h("90C4000029") + b"\x01" + SECRET + SECRET + bytes(8) + b"\x00"
    update = h("00D6000010") + SECRET
    text = "\n".join(_trace(caplog, Scripted(h("9100"), h("9000")), change_key, update))
    assert _spaced(SECRET) not in text and SECRET.hex() not in text.lower()
    assert "90 C4 00 00 29 <41 bytes redacted>" in text
    assert "00 D6 00 00 10 <16 bytes redacted>" in text


def test_authentication_frames_are_redacted_both_ways(caplog: pytest.LogCaptureFixture) -> None:
    enc_rnd_b = SECRET
    lines = _trace(
        caplog,
        Scripted(enc_rnd_b + h("91AF"), SECRET + SECRET + h("9100")),
        h("9071000002000000"),  # AuthenticateEV2First, key 0
        h("90AF000020") + SECRET + SECRET + h("00"),
    )
    text = "\n".join(lines)
    assert _spaced(SECRET) not in text
    assert lines[1] == "< <16 bytes redacted> 91 AF"
    assert lines[2] == "> 90 AF 00 00 20 <32 bytes redacted>"
    assert lines[3] == "< <32 bytes redacted> 91 00"


def test_get_version_continuation_is_not_mistaken_for_auth(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lines = _trace(
        caplog,
        Scripted(h("0404023000110591AF"), h("0404020101110591AF")),
        h("9060000000"),
        h("90AF000000"),
    )
    assert lines[1] == "< 04 04 02 30 00 11 05 91 AF"
    assert lines[3] == "< 04 04 02 01 01 11 05 91 AF"


def test_unknown_commands_hide_their_data(caplog: pytest.LogCaptureFixture) -> None:
    lines = _trace(caplog, Scripted(h("9100")), h("908D00000C") + SECRET[:12] + b"\x00")
    assert lines[0] == "> 90 8D 00 00 0C <12 bytes redacted>"


def test_a_real_authentication_leaks_no_session_material(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reader = EmulatedReader()
    reader.present(EmulatedCard.factory(h("04112233445566")))
    link = reader.wait_for_card(1.0)
    assert link is not None
    tracer = TracingLink(link)
    rnd_a = os.urandom(16)
    with caplog.at_level(logging.DEBUG, logger="station.readers.trace"):
        tracer.transceive(h("00A4040C07D276000085010100"))
        session = drive(authenticate(0, bytes(16), lambda n: rnd_a[:n]), tracer.transceive)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert session is not None
    assert tracer.apdus == 3
    assert _spaced(rnd_a) not in text
    # both authentication commands and both answers show no payload bytes
    auth_lines = [line for line in text.splitlines() if "redacted" in line]
    assert len(auth_lines) == 4


def test_a_tap_through_the_tracer_counts_three_apdus() -> None:
    reader = EmulatedReader()
    reader.present(bolt_card())
    link = reader.wait_for_card(1.0)
    assert link is not None
    tracer = TracingLink(link)
    url = drive(read_sun_url(), tracer.transceive)
    assert url.startswith("lnurlw://")
    assert tracer.apdus == 3


def test_errors_pass_through_and_close_is_forwarded() -> None:
    reader = EmulatedReader()
    reader.present(EmulatedCard.factory(h("04112233445566")))
    link = reader.wait_for_card(1.0)
    assert link is not None
    tracer = TracingLink(link)
    reader.remove()
    with pytest.raises(CardRemoved):
        tracer.transceive(h("00A4040C07D276000085010100"))
    assert tracer.apdus == 1
    scripted = Scripted()
    TracingLink(scripted).close()
    assert scripted.closed


def test_a_tap_trace_never_shows_the_fresh_p_or_c(caplog: pytest.LogCaptureFixture) -> None:
    """The NDEF file a tap reads holds a fresh p/c pair: a spendable tap, never in a log."""
    reader = EmulatedReader()
    reader.present(bolt_card())
    link = reader.wait_for_card(1.0)
    assert link is not None
    tracer = TracingLink(link)
    with caplog.at_level(logging.DEBUG, logger="station.readers.trace"):
        url = drive(read_sun_url(), tracer.transceive)
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == "station.readers.trace")
    p = url.split("p=")[1][:32]
    c = url.split("c=")[1][:16]
    for value in (p, c):
        spaced = _spaced(value.encode("ascii"))  # the URL travels as ASCII in the NDEF file
        assert spaced not in text
        assert spaced[: 3 * 4] not in text  # not even its first four characters
    # The rest of the URL still shows: the scheme, and the parameter names with masked values.
    assert _spaced(b"lnurlw"[1:]) in text
    assert _spaced(b"?p=") in text


def test_sun_values_are_masked_in_any_response() -> None:
    from station.readers.tracing import format_response

    body = b"x/?picc_data=0A1B&enc=FF&cmac=99&other=AB&c=12"
    shown = format_response(body + b"\x90\x00", secret=False)
    cells = shown.split(" ")
    assert cells[-2:] == ["90", "00"]
    masked = [chr(b) for b, cell in zip(body, cells, strict=False) if cell == ".."]
    assert "".join(masked) == "0A1B" + "FF" + "99" + "12"
    assert "41 42" in shown  # other=AB is not a SUN value
