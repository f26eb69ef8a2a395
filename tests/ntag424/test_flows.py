"""Generator flows driven by recorded transcripts: no reader, no card, exact bytes."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest
from published import BY_ID

from station.ntag424.errors import AuthenticationError, FileNotFound, ProtocolError
from station.ntag424.flows import (
    CardNotBlank,
    Replay,
    authenticate,
    drive,
    provision_bolt_card,
    read_sun_url,
    template_of,
)
from station.ntag424.ndef import bolt_card_layout, bolt_card_template
from station.ntag424.session import Session

h = bytes.fromhex

SELECT_APP = h("00A4040C07D276000085010100")
SELECT_NDEF = h("00A4000C02E10400")
OK_ISO = h("9000")
TEMPLATE = bolt_card_template("lnurlw://card.example.com/ln")


def fixed_rng(*chunks: bytes) -> Any:
    queue = list(chunks)

    def rng(n: int) -> bytes:
        out = queue.pop(0)
        assert len(out) == n
        return out

    return rng


def test_drive_returns_the_flow_result_and_sends_in_order() -> None:
    def flow() -> Generator[bytes, bytes, list[bytes]]:
        a = yield b"\x01"
        b = yield b"\x02"
        return [a, b]

    sent: list[bytes] = []

    def transceive(apdu: bytes) -> bytes:
        sent.append(apdu)
        return apdu * 2

    assert drive(flow(), transceive) == [b"\x01\x01", b"\x02\x02"]
    assert sent == [b"\x01", b"\x02"]


def test_read_sun_url_is_exactly_three_apdus() -> None:
    layout = bolt_card_layout(TEMPLATE)
    p, c = "EF963FF7828658A599F3041510671E88", "94EED9EE65337086"
    url = TEMPLATE.replace("0" * 32, p).replace("0" * 16, c)
    file = bytearray(layout.file_data + bytes(256 - len(layout.file_data)))
    file[layout.picc_data_offset : layout.picc_data_offset + 32] = p.encode()
    file[layout.mac_offset : layout.mac_offset + 16] = c.encode()
    rep = Replay(
        [OK_ISO, OK_ISO, bytes(file) + OK_ISO],
        [SELECT_APP, SELECT_NDEF, h("00B0000000")],
    )
    assert drive(read_sun_url(), rep) == url
    assert len(rep.sent) == 3
    assert template_of(url) == TEMPLATE


def test_read_sun_url_with_computed_le() -> None:
    layout = bolt_card_layout(TEMPLATE)
    le = layout.read_length
    rep = Replay(
        [OK_ISO, OK_ISO, layout.file_data + OK_ISO],
        [SELECT_APP, SELECT_NDEF, h("00B00000") + bytes([le])],
    )
    assert drive(read_sun_url(le), rep) == TEMPLATE


def test_read_sun_url_on_a_card_without_ndef_app() -> None:
    with pytest.raises(FileNotFound):
        drive(read_sun_url(), Replay([h("6A82")]))


def test_authenticate_first_replays_table_14() -> None:
    vec = BY_ID["an12196-t14-auth-ev2first-key0"]
    i, x = vec["inputs"], vec["expected"]
    rep = Replay([h(i["r_apdu1"]), h(i["r_apdu2"])], [h(x["c_apdu1"]), h(x["c_apdu2"])])
    s = drive(authenticate(0, h(i["key"]), fixed_rng(h(i["rnd_a"]))), rep)
    assert s.ti == h(x["ti"])
    assert s.k_mac == h(x["k_ses_auth_mac"])


def test_authenticate_inside_a_session_uses_non_first_table_24() -> None:
    vec = BY_ID["an12196-t24-auth-ev2nonfirst-key0"]
    i, x = vec["inputs"], vec["expected"]
    previous = Session(3, bytes(16), bytes(16), h("7614281A"), cmd_ctr=2)
    rep = Replay([h(i["r_apdu1"]), h(i["r_apdu2"])], [h(x["c_apdu1"]), h(x["c_apdu2"])])
    s = drive(authenticate(0, h(i["key"]), fixed_rng(h(i["rnd_a"])), previous), rep)
    assert (s.ti, s.cmd_ctr, s.k_enc) == (h("7614281A"), 2, h(x["k_ses_auth_enc"]))


def test_authenticate_with_wrong_key() -> None:
    vec = BY_ID["an12196-t14-auth-ev2first-key0"]["inputs"]
    with pytest.raises(AuthenticationError):
        drive(
            authenticate(0, bytes(16), fixed_rng(h(vec["rnd_a"]))),
            Replay([h(vec["r_apdu1"]), h("91AE")]),
        )


def test_provision_refuses_a_card_whose_key_0_is_not_factory() -> None:
    """The card answers 91AE to part 2: nothing may be written."""
    vec = BY_ID["an12196-t14-auth-ev2first-key0"]["inputs"]
    rep = Replay([OK_ISO, h(vec["r_apdu1"]), h("91AE")])
    keys = type("K", (), {f"k{n}": bytes([n]) * 16 for n in range(5)})()
    with pytest.raises(CardNotBlank):
        drive(provision_bolt_card(TEMPLATE, keys, fixed_rng(h(vec["rnd_a"]))), rep)
    assert len(rep.sent) == 3


def test_provision_refuses_a_card_whose_answer_is_forged() -> None:
    vec = BY_ID["an12196-t14-auth-ev2first-key0"]["inputs"]
    bad = bytearray(h(vec["r_apdu2"]))
    bad[10] ^= 1
    rep = Replay([OK_ISO, h(vec["r_apdu1"]), bytes(bad)])
    keys = type("K", (), {f"k{n}": bytes(16) for n in range(5)})()
    with pytest.raises(ProtocolError):
        drive(provision_bolt_card(TEMPLATE, keys, fixed_rng(h(vec["rnd_a"]))), rep)


def test_replay_points_at_the_first_wrong_apdu() -> None:
    rep = Replay([OK_ISO], [h("00A4040C07D276000085010200")])
    with pytest.raises(AssertionError, match="C-APDU #0"):
        drive(read_sun_url(), rep)


def test_template_of_restores_placeholders() -> None:
    url = "lnurlw://h/p?p=" + "A" * 32 + "&c=" + "B" * 16
    assert template_of(url) == "lnurlw://h/p?p=" + "0" * 32 + "&c=" + "0" * 16
