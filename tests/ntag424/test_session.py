"""EV2 authentication and secure messaging against NXP's worked examples (AN12196 §5-§7).

Every expected value comes from tests/vectors/ntag424-public-vectors.json (NXP's tables, with
their errata corrected as the file documents), never from this code's own output.
"""

from __future__ import annotations

from typing import Any

import pytest
from published import BY_ID, VECTORS

from station.ntag424 import crypto
from station.ntag424.errors import AuthenticationError, IntegrityError, ProtocolError, UsageError
from station.ntag424.filesettings import CommMode
from station.ntag424.session import AuthenticateEV2First, AuthenticateEV2NonFirst, Session

h = bytes.fromhex


def of_kind(kind: str) -> list[dict[str, Any]]:
    found = [v for v in VECTORS if v["kind"] == kind]
    assert found, f"no vectors of kind {kind}"
    return found


def ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["id"] for v in vectors]


def session_of(inputs: dict[str, Any]) -> Session:
    return Session(
        key_no=0,
        k_enc=h(inputs.get("k_ses_auth_enc", "00" * 16)),
        k_mac=h(inputs["k_ses_auth_mac"]),
        ti=h(inputs["ti"]),
        cmd_ctr=inputs["cmd_ctr"],
    )


MODES = {"MAC": CommMode.MAC, "FULL": CommMode.FULL, "PLAIN": CommMode.PLAIN}


# -- AuthenticateEV2First -------------------------------------------------------------------

FIRST = of_kind("ev2_auth_first")


@pytest.mark.parametrize("vec", FIRST, ids=ids(FIRST))
def test_ev2_first_reproduces_nxp_exchange(vec: dict[str, Any]) -> None:
    i, x = vec["inputs"], vec["expected"]
    auth = AuthenticateEV2First(int(i["key_no"], 16), h(i["key"]), h(i["rnd_a"]))
    assert auth.command1() == h(x["c_apdu1"])
    assert auth.command2(h(i["r_apdu1"])) == h(x["c_apdu2"])
    assert auth.rnd_b == h(x["rnd_b"])
    session = auth.finish(h(i["r_apdu2"]))
    assert session.ti == h(x["ti"])
    assert session.k_enc == h(x["k_ses_auth_enc"])
    assert session.k_mac == h(x["k_ses_auth_mac"])
    assert session.cmd_ctr == 0
    assert session.key_no == int(i["key_no"], 16)
    assert session.active
    if "pdcap2" in x:
        assert auth.pd_cap2 == h(x["pdcap2"])
    assert crypto.auth_session_vector(crypto.SV_AUTH_ENC, h(i["rnd_a"]), auth.rnd_b) == h(x["sv1"])


def test_ev2_first_rejects_a_card_that_does_not_know_the_key() -> None:
    vec = BY_ID["an12196-t14-auth-ev2first-key0"]["inputs"]
    auth = AuthenticateEV2First(0, h(vec["key"]), h(vec["rnd_a"]))
    auth.command2(h(vec["r_apdu1"]))
    tampered = bytearray(h(vec["r_apdu2"]))
    tampered[5] ^= 0x01  # corrupts the RndA' block
    with pytest.raises(ProtocolError, match="RndA"):
        auth.finish(bytes(tampered))


def test_ev2_first_wrong_key_status_raises_authentication_error() -> None:
    vec = BY_ID["an12196-t14-auth-ev2first-key0"]["inputs"]
    auth = AuthenticateEV2First(0, h(vec["key"]), h(vec["rnd_a"]))
    auth.command2(h(vec["r_apdu1"]))
    with pytest.raises(AuthenticationError):
        auth.finish(h("91AE"))


def test_ev2_first_checks_arguments() -> None:
    with pytest.raises(UsageError):
        AuthenticateEV2First(5, bytes(16), bytes(16))
    with pytest.raises(UsageError):
        AuthenticateEV2First(0, bytes(15), bytes(16))
    with pytest.raises(UsageError):
        AuthenticateEV2First(0, bytes(16), bytes(8))
    with pytest.raises(UsageError):
        AuthenticateEV2First(0, bytes(16), bytes(16)).finish(h("9100"))


# -- AuthenticateEV2NonFirst ----------------------------------------------------------------


def test_ev2_non_first_keeps_ti_and_cmd_ctr_and_renews_keys() -> None:
    vec = BY_ID["an12196-t24-auth-ev2nonfirst-key0"]
    i, x = vec["inputs"], vec["expected"]
    # Table 20 authenticated key 3 (TI 7614281A); Table 22 WriteData and the plain CC write
    # were commands 0 and 1, so CmdCtr is 2 when Table 24 runs (see the t26 vector's notes).
    first = BY_ID["an12196-t20-auth-ev2first-key3"]["expected"]
    previous = Session(3, h(first["k_ses_auth_enc"]), h(first["k_ses_auth_mac"]), h(first["ti"]), 2)
    auth = AuthenticateEV2NonFirst(0, h(i["key"]), h(i["rnd_a"]), previous)
    assert auth.command1() == h(x["c_apdu1"])
    assert auth.command2(h(i["r_apdu1"])) == h(x["c_apdu2"])
    session = auth.finish(h(i["r_apdu2"]))
    assert session.k_enc == h(x["k_ses_auth_enc"])
    assert session.k_mac == h(x["k_ses_auth_mac"])
    assert session.ti == h(first["ti"])
    assert session.cmd_ctr == 2, "NonFirst must not reset CmdCtr"
    assert not previous.active
    # The t26 ChangeKey vector runs on exactly this session at CmdCtr 2.
    t26 = BY_ID["an12196-t26-changekey-case1"]["inputs"]
    assert session.cmd_ctr == t26["cmd_ctr"]
    assert session.k_mac == h(t26["k_ses_auth_mac"])


def test_ev2_non_first_needs_an_active_session() -> None:
    dead = Session(0, bytes(16), bytes(16), bytes(4), active=False)
    with pytest.raises(UsageError):
        AuthenticateEV2NonFirst(0, bytes(16), bytes(16), dead)


# -- secure messaging -----------------------------------------------------------------------

SM = of_kind("secure_messaging")


@pytest.mark.parametrize("vec", SM, ids=ids(SM))
def test_secure_messaging_command_matches_nxp(vec: dict[str, Any]) -> None:
    i, x = vec["inputs"], vec["expected"]
    s = session_of(i)
    mode = MODES[i["comm_mode"]]
    if "ivc" in x:
        assert s.iv_command() == h(x["ivc"])
    apdu = s.wrap(int(i["cmd"], 16), h(i["cmd_header"]), h(i["cmd_data"]), mode)
    assert apdu == h(x["c_apdu"])
    if "cmd_mact" in x:
        assert apdu[-9:-1] == h(x["cmd_mact"])
    if "cmd_data_enc" in x:
        assert h(x["cmd_data_enc"]) in apdu
    if "cmd_mac_input" in x:
        header = h(i["cmd_header"])
        enc = apdu[5 + len(header) : -9]
        mac_input = s.command_mac_input(int(i["cmd"], 16), header, enc)
        assert mac_input == h(x["cmd_mac_input"])
        if "cmd_cmac" in x:
            assert crypto.cmac(s.k_mac, mac_input) == h(x["cmd_cmac"])


@pytest.mark.parametrize("vec", SM, ids=ids(SM))
def test_secure_messaging_response_matches_nxp(vec: dict[str, Any]) -> None:
    i, x = vec["inputs"], vec["expected"]
    s = session_of(i)
    if "ivr" in x:
        assert s.iv_response() == h(x["ivr"])
    r_apdu = h(i["r_apdu"])
    if "resp_mac_input" in x or "resp_cmac" in x:
        mac_input = s.response_mac_input(r_apdu[-1], r_apdu[:-10])
        if "resp_mac_input" in x:
            assert mac_input == h(x["resp_mac_input"])
        if "resp_cmac" in x:
            assert crypto.cmac(s.k_mac, mac_input) == h(x["resp_cmac"])
        assert s.response_mac(r_apdu[-1], r_apdu[:-10]) == h(x["resp_mact"])
    data = s.unwrap(r_apdu, MODES[i["comm_mode"]], "test")
    assert data == h(x.get("resp_data", ""))
    assert s.cmd_ctr == i["cmd_ctr"] + 1
    assert s.active


@pytest.mark.parametrize("vec", SM, ids=ids(SM))
def test_tampered_response_mac_is_refused_and_ends_the_session(vec: dict[str, Any]) -> None:
    i = vec["inputs"]
    s = session_of(i)
    r = bytearray(h(i["r_apdu"]))
    r[-3] ^= 0x80  # last MAC byte
    with pytest.raises(ProtocolError, match="MAC"):
        s.unwrap(bytes(r), MODES[i["comm_mode"]], "test")
    assert not s.active
    with pytest.raises(UsageError):
        s.wrap(0x51, b"", b"", CommMode.FULL)


def test_response_mac_uses_incremented_counter() -> None:
    """The same answer verified at the command's CmdCtr (not +1) must fail."""
    vec = BY_ID["an12196-t19-changefilesettings"]["inputs"]
    s = session_of(vec)
    s.cmd_ctr -= 1  # pretend the counter was not advanced: MAC input would use 01 instead of 02
    with pytest.raises(ProtocolError):
        s.unwrap(h(vec["r_apdu"]), CommMode.FULL, "ChangeFileSettings")


def test_plain_commands_advance_cmd_ctr_too() -> None:
    s = Session(0, bytes(16), bytes(16), bytes(4), cmd_ctr=5)
    apdu = s.wrap(0x8D, b"\x01\x00\x00\x00\x01\x00\x00", b"\xaa", CommMode.PLAIN)
    assert apdu == h("908D00000801000000010000AA00")
    assert s.unwrap(h("9100"), CommMode.PLAIN, "WriteData") == b""
    assert s.cmd_ctr == 6


def test_card_error_maps_status_and_ends_session() -> None:
    s = Session(0, bytes(16), bytes(16), bytes(4))
    with pytest.raises(IntegrityError):
        s.unwrap(h("911E"), CommMode.FULL, "ChangeKey")
    assert not s.active


def test_bare_9100_after_changing_own_key() -> None:
    s = Session(0, bytes(16), bytes(16), bytes(4), cmd_ctr=3)
    assert s.unwrap(h("9100"), CommMode.FULL, "ChangeKey", expect_mac=False) == b""
    with pytest.raises(ProtocolError):
        Session(0, bytes(16), bytes(16), bytes(4)).unwrap(
            h("01020304050607089100"), CommMode.FULL, "ChangeKey", expect_mac=False
        )


def test_missing_mac_is_a_protocol_error() -> None:
    s = Session(0, bytes(16), bytes(16), bytes(4))
    with pytest.raises(ProtocolError):
        s.unwrap(h("9100"), CommMode.MAC, "GetKeyVersion")


def test_cmd_ctr_exhaustion_requires_new_authentication() -> None:
    s = Session(0, bytes(16), bytes(16), bytes(4), cmd_ctr=0xFFFF)
    with pytest.raises(UsageError, match="authenticate"):
        s.wrap(0x51, b"", b"", CommMode.FULL)


def test_session_repr_does_not_show_keys() -> None:
    key = h("5004BF991F408672B1EF00F08F9E8647")
    s = Session(0, key, key, bytes(4))
    assert key.hex() not in repr(s).lower()
    assert "k_enc" not in repr(s)


def test_full_mode_round_trip_with_card_side_encryption() -> None:
    """Independent card-side computation: encrypt a response as the datasheet describes."""
    s = Session(0, bytes(range(16)), bytes(range(16, 32)), h("01020304"), cmd_ctr=7)
    payload = b"hello, card"
    ivr = crypto.aes_ecb_encrypt(s.k_enc, h("5AA5") + s.ti + (8).to_bytes(2, "little") + bytes(8))
    enc = crypto.aes_cbc_encrypt(s.k_enc, ivr, crypto.pad_m2(payload))
    mac = crypto.mact(s.k_mac, b"\x00" + (8).to_bytes(2, "little") + s.ti + enc)
    assert s.unwrap(enc + mac + h("9100"), CommMode.FULL, "ReadData") == payload
    assert s.cmd_ctr == 8
