"""Command flows against AN12196's worked examples and the datasheet's layouts."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from published import BY_ID, VECTORS

from station.ntag424 import commands as cmd
from station.ntag424 import crypto
from station.ntag424.errors import (
    FileNotFound,
    LengthError,
    PermissionDenied,
    ProtocolError,
    UsageError,
)
from station.ntag424.filesettings import (
    FACTORY_NDEF_FILE,
    FREE,
    NEVER,
    AccessRights,
    CommMode,
    FileSettings,
    SdmSettings,
    bolt_card_ndef_settings,
)
from station.ntag424.flows import Replay, drive
from station.ntag424.session import Session

h = bytes.fromhex


def session_of(inputs: dict[str, Any], key_no: int = 0) -> Session:
    return Session(
        key_no=key_no,
        k_enc=h(inputs.get("k_ses_auth_enc", "00" * 16)),
        k_mac=h(inputs["k_ses_auth_mac"]),
        ti=h(inputs["ti"]),
        cmd_ctr=inputs["cmd_ctr"],
    )


def replay(vec: dict[str, Any]) -> Replay:
    return Replay([h(vec["inputs"]["r_apdu"])], [h(vec["expected"]["c_apdu"])])


# -- ChangeKey (AN12196 §6.16) --------------------------------------------------------------

CRC = [v for v in VECTORS if v["kind"] == "crc32_nxp"]


@pytest.mark.parametrize("vec", CRC, ids=[v["id"] for v in CRC])
def test_crc32nk_matches_published(vec: dict[str, Any]) -> None:
    assert crypto.crc32nk(h(vec["inputs"]["data"])) == h(vec["expected"]["crc32"])


def test_change_other_key_xors_old_and_appends_crc_of_new() -> None:
    vec = BY_ID["an12196-t26-changekey-case1"]
    i, x = vec["inputs"], vec["expected"]
    s = session_of(i)
    version = int(i["new_key_version"], 16)
    data = cmd.change_key_data(0, 2, h(i["new_key"]), version, h(i["old_key"]))
    assert data == h(x["key_data"])
    _check_change_key_internals(s, vec, data)
    rep = replay(vec)
    drive(cmd.change_key(s, 2, h(i["new_key"]), 1, h(i["old_key"])), rep)
    assert s.active, "changing another key keeps the session"
    assert s.cmd_ctr == 3


def test_change_authenticated_key_sends_new_key_and_ends_session() -> None:
    vec = BY_ID["an12196-t27-changekey-case2"]
    i, x = vec["inputs"], vec["expected"]
    s = session_of(i)
    assert cmd.change_key_data(0, 0, h(i["new_key"]), 1, None) == h(x["key_data"])
    _check_change_key_internals(s, vec, h(x["key_data"]))
    drive(cmd.change_key(s, 0, h(i["new_key"]), 1), replay(vec))
    assert not s.active


def _check_change_key_internals(s: Session, vec: dict[str, Any], key_data: bytes) -> None:
    """IV input, IVc, padding, ciphertext and MAC input as printed in Tables 26/27."""
    x = vec["expected"]
    assert x["ivc_input"].startswith("A55A") and s.ti.hex().upper() in x["ivc_input"]
    assert s.iv_command() == h(x["ivc"])
    assert crypto.aes_ecb_encrypt(s.k_enc, h(x["ivc_input"])) == h(x["ivc"])
    assert crypto.pad_m2(key_data) == h(x["cmd_data_padded"])
    enc = s.encrypt_command_data(key_data)
    assert enc == h(x["cmd_data_enc"])
    key_no = h(vec["inputs"]["key_no"])
    assert s.command_mac_input(0xC4, key_no, enc) == h(x["cmd_mac_input"])
    assert crypto.cmac(s.k_mac, h(x["cmd_mac_input"])) == h(x["cmd_cmac"])
    assert s.command_mac(0xC4, key_no, enc) == h(x["cmd_mact"])


def test_change_key_needs_key_0_and_the_old_key() -> None:
    s = Session(3, bytes(16), bytes(16), bytes(4))
    with pytest.raises(UsageError, match="key 0"):
        drive(cmd.change_key(s, 1, bytes(16), 1, bytes(16)), Replay([]))
    s0 = Session(0, bytes(16), bytes(16), bytes(4))
    with pytest.raises(UsageError, match="old"):
        drive(cmd.change_key(s0, 1, bytes(16), 1), Replay([]))


def test_change_key_refuses_a_forged_response_mac() -> None:
    vec = BY_ID["an12196-t26-changekey-case1"]
    i = vec["inputs"]
    s = session_of(i)
    with pytest.raises(ProtocolError):
        drive(
            cmd.change_key(s, 2, h(i["new_key"]), 1, h(i["old_key"])),
            Replay([h("00000000000000009100")]),
        )


# -- file settings (AN12196 Tables 8, 19) ---------------------------------------------------


def test_get_file_settings_mac_mode_parses_sdm_settings() -> None:
    vec = BY_ID["an12196-t8-commmode-mac-getfilesettings"]
    s = session_of(vec["inputs"])
    settings = drive(cmd.get_file_settings(2, s), replay(vec))
    assert settings.size == 256
    assert settings.comm_mode is CommMode.PLAIN
    assert settings.access == AccessRights(read=FREE, write=FREE, read_write=FREE, change=FREE)
    sdm = settings.sdm
    assert sdm is not None
    assert (sdm.uid_mirror, sdm.read_ctr_mirror, sdm.enc_file_data) == (True, True, True)
    assert (sdm.meta_read, sdm.file_read, sdm.ctr_ret) == (0, 0, 0xE)
    assert sdm.picc_data_offset == 0x1F
    assert (sdm.mac_input_offset, sdm.enc_offset, sdm.enc_length) == (0x44, 0x44, 0x20)
    assert sdm.mac_offset == 0x6A
    assert settings.to_bytes() == h(vec["expected"]["resp_data"])


def test_change_file_settings_reproduces_table_19() -> None:
    vec = BY_ID["an12196-t19-changefilesettings"]
    settings = FileSettings(
        comm_mode=CommMode.PLAIN,
        access=AccessRights(read=FREE, write=0, read_write=0, change=0),
        sdm=SdmSettings(
            uid_mirror=True,
            read_ctr_mirror=True,
            ctr_ret=1,
            meta_read=2,
            file_read=1,
            picc_data_offset=0x20,
            mac_input_offset=0x43,
            mac_offset=0x43,
        ),
    )
    assert settings.change_payload() == h(vec["inputs"]["cmd_data"])
    s = session_of(vec["inputs"])
    drive(cmd.change_file_settings(s, 2, settings), replay(vec))
    assert s.cmd_ctr == 2


def test_plain_get_file_settings_of_factory_ndef_file() -> None:
    rep = Replay([h("0000E0EE0001009100")], [h("90F50000010200")])
    settings = drive(cmd.get_file_settings(2), rep)
    assert settings == FACTORY_NDEF_FILE


@pytest.mark.parametrize(
    "bad",
    [
        SdmSettings(meta_read=1, file_read=2, picc_data_offset=32),  # MAC offsets missing
        SdmSettings(meta_read=1, picc_data_offset=32, mac_offset=60),  # offset without FileRead
        SdmSettings(meta_read=0xE, file_read=NEVER, uid_offset=10),  # counter offset missing
        SdmSettings(meta_read=1, file_read=2, picc_data_offset=1, mac_input_offset=9, mac_offset=8),
        SdmSettings(meta_read=7, file_read=2, picc_data_offset=1, mac_input_offset=1, mac_offset=1),
        SdmSettings(
            enc_file_data=True,
            meta_read=1,
            file_read=2,
            picc_data_offset=1,
            mac_input_offset=40,
            enc_offset=40,
            enc_length=20,
            mac_offset=80,
        ),
    ],
)
def test_inconsistent_sdm_settings_are_refused_before_reaching_the_card(bad: SdmSettings) -> None:
    with pytest.raises(UsageError):
        FileSettings(sdm=bad).change_payload()


def test_file_settings_parse_rejects_garbage() -> None:
    with pytest.raises(ProtocolError):
        FileSettings.parse(h("0000E0EE0001"))  # truncated
    with pytest.raises(ProtocolError):
        FileSettings.parse(h("0002E0EE000100"))  # CommMode 10b is reserved
    with pytest.raises(ProtocolError):
        FileSettings.parse(h("0040E0EE000100C1FF12200000"))  # SDM offsets truncated
    with pytest.raises(ProtocolError):
        FileSettings.parse(h("0000E0EE00010000"))  # trailing byte


def test_bolt_card_settings_bytes() -> None:
    """Bolt Card layout: options C1, SDM access FF12 (ctr F, meta key 1, file key 2)."""
    payload = bolt_card_ndef_settings(42, 77).change_payload()
    assert payload == h("4000E0C1FF122A00004D00004D0000")
    assert FileSettings.parse_change_payload(payload) == bolt_card_ndef_settings(42, 77)


# -- other authenticated commands -----------------------------------------------------------


def test_get_card_uid_decrypts_table_29() -> None:
    vec = BY_ID["an12196-t29-getcarduid-full-response"]
    s = session_of(vec["inputs"])
    assert drive(cmd.get_card_uid(s), replay(vec)) == h(vec["expected"]["resp_data"])


def test_set_configuration_reproduces_table_28() -> None:
    vec = BY_ID["an12196-t28-setconfiguration-randomid"]
    s = session_of(vec["inputs"])
    drive(cmd.set_configuration(s, 0x00, h("02")), replay(vec))
    assert s.cmd_ctr == 1


@pytest.mark.parametrize(
    "vid", ["an12196-t22-writedata-proprietary", "an12196-t18-writedata-ndef-full"]
)
def test_write_data_full_reproduces_nxp(vid: str) -> None:
    vec = BY_ID[vid]
    i = vec["inputs"]
    header = h(i["cmd_header"])
    s = session_of(i)
    drive(cmd.write_data(header[0], 0, h(i["cmd_data"]), CommMode.FULL, s), replay(vec))
    assert s.cmd_ctr == i["cmd_ctr"] + 1


def test_write_data_splits_long_data_and_counts_each_command() -> None:
    s = Session(0, bytes(16), bytes(16), bytes(4))
    rep = Replay([h("9100")] * 2)
    drive(cmd.write_data(2, 0, bytes(200), CommMode.PLAIN, s), rep)
    assert [a[:12] for a in rep.sent] == [
        h("908D00008702000000800000"),
        h("908D00004F02800000480000"),
    ]
    assert s.cmd_ctr == 2


def test_read_data_plain_and_length_check() -> None:
    rep = Replay([h("0102039100")], [h("90AD0000070200000003000000")])
    assert drive(cmd.read_data(2, 0, 3), rep) == h("010203")
    with pytest.raises(ProtocolError):
        drive(cmd.read_data(2, 0, 4), Replay([h("0102039100")]))


def test_get_key_version_plain_and_mac() -> None:
    assert drive(cmd.get_key_version(1), Replay([h("009100")], [h("90640000010100")])) == 0
    with pytest.raises(UsageError):
        drive(cmd.get_key_version(5), Replay([]))


def test_authenticated_only_commands_refuse_to_run_plain() -> None:
    dead = Session(0, bytes(16), bytes(16), bytes(4), active=False)
    with pytest.raises(UsageError):
        drive(cmd.get_card_uid(dead), Replay([]))


# -- unauthenticated commands ---------------------------------------------------------------


def test_read_sig_table_30() -> None:
    vec = BY_ID["an12196-t30-originality-signature"]
    i = vec["inputs"]
    sig = h(i["signature_r_s"])
    rep = Replay([sig + h("9100")], [h(i["c_apdu"])])
    assert drive(cmd.read_sig(), rep) == sig


GV_HW = h("04040230001105")
GV_SW = h("04040102011105")
GV_P3 = h("04958CAA5C5E80CF39A144502021")


def test_get_version_chains_three_frames() -> None:
    rep = Replay(
        [GV_HW + h("91AF"), GV_SW + h("91AF"), GV_P3 + h("9100")],
        [h("9060000000"), h("90AF000000"), h("90AF000000")],
    )
    v = drive(cmd.get_version(), rep)
    assert v.uid == h("04958CAA5C5E80")
    assert v.vendor_id == 0x04
    assert v.hw_version == (0x30, 0x00)
    assert v.production_week == 20 and v.production_year == 2021  # BCD 20h, 21h
    assert v.fab_key_id is None
    assert v.looks_like_ntag424_dna
    assert not v.random_uid


def test_get_version_refuses_a_short_chain() -> None:
    with pytest.raises(ProtocolError):
        drive(cmd.get_version(), Replay([GV_HW + h("9100")]))
    with pytest.raises(ProtocolError):
        drive(cmd.get_version(), Replay([GV_HW + h("91AF"), GV_SW + h("91AF"), h("009100")]))


def test_iso_select_and_read_binary_apdus() -> None:
    rep = Replay(
        [h("9000"), h("9000"), h("0003D000009000")],
        [h("00A4040C07D276000085010100"), h("00A4000C02E10400"), h("00B0000000")],
    )
    drive(cmd.iso_select_application(), rep)
    drive(cmd.iso_select_file(cmd.NDEF_FILE_ID), rep)
    assert drive(cmd.iso_read_binary(0, 0), rep) == h("0003D00000")


def test_status_words_become_specific_errors() -> None:
    with pytest.raises(FileNotFound):
        drive(cmd.iso_select_file(0xE106), Replay([h("6A82")]))
    with pytest.raises(PermissionDenied):
        drive(cmd.get_file_settings(2), Replay([h("919D")]))
    with pytest.raises(LengthError):
        drive(cmd.read_data(2, 0, 0), Replay([h("917E")]))


def test_iso_update_binary_apdu() -> None:
    rep = Replay([h("9000")], [h("00D6000203AABBCC")])
    drive(cmd.iso_update_binary(2, h("AABBCC")), rep)
    with pytest.raises(UsageError):
        drive(cmd.iso_update_binary(0x8000, b"x"), Replay([]))


# -- file settings: any consistent settings survive build → parse ---------------------------

KEYISH = st.sampled_from([0, 1, 2, 3, 4, FREE, NEVER])
OFFSET = st.integers(0, 0xFFFFFF)


@st.composite
def sdm_settings(draw: st.DrawFn) -> SdmSettings:
    uid, ctr = draw(st.booleans()), draw(st.booleans())
    meta = draw(KEYISH)
    if meta <= 4 and not (uid or ctr):
        meta = FREE
    file_read = draw(KEYISH)
    enc = file_read != NEVER and uid and ctr and draw(st.booleans())
    limit = draw(st.booleans())
    mac_in = draw(st.integers(0, 0x7FFF))
    return SdmSettings(
        uid_mirror=uid,
        read_ctr_mirror=ctr,
        read_ctr_limit_enabled=limit,
        enc_file_data=enc,
        ctr_ret=draw(KEYISH),
        meta_read=meta,
        file_read=file_read,
        uid_offset=draw(OFFSET) if uid and meta == FREE else None,
        read_ctr_offset=draw(OFFSET) if ctr and meta == FREE else None,
        picc_data_offset=draw(OFFSET) if meta <= 4 else None,
        mac_input_offset=mac_in if file_read != NEVER else None,
        enc_offset=draw(OFFSET) if enc else None,
        enc_length=32 * draw(st.integers(1, 8)) if enc else None,
        mac_offset=mac_in + draw(st.integers(0, 0x7FFF)) if file_read != NEVER else None,
        read_ctr_limit=draw(OFFSET) if limit else None,
    )


@given(
    comm=st.sampled_from(list(CommMode)),
    access=st.builds(AccessRights, KEYISH, KEYISH, KEYISH, KEYISH),
    sdm=st.none() | sdm_settings(),
    size=st.integers(0, 0xFFFFFF),
)
def test_file_settings_round_trip(
    comm: CommMode, access: AccessRights, sdm: SdmSettings | None, size: int
) -> None:
    fs = FileSettings(comm_mode=comm, access=access, sdm=sdm, size=size)
    assert FileSettings.parse(fs.to_bytes()) == fs
    assert FileSettings.parse_change_payload(fs.change_payload()) == FileSettings(
        comm_mode=comm, access=access, sdm=sdm
    )


def test_get_version_production_date_is_bcd() -> None:
    """Week and year of production are BCD (datasheet §10.5.2 lists the week as 01h..52h)."""
    from station.ntag424.commands import parse_version

    hw = bytes.fromhex("04040230001105")
    sw = bytes.fromhex("04040201021105")
    # UID, BatchNo || FabKey bits, then FabKey bit 7 set + week 52h, year 19h
    part3 = bytes.fromhex("04C767F2066180" "CF39A9F4D0" "D2" "19")
    info = parse_version((hw, sw, part3))
    assert info.production_week == 52
    assert info.production_year == 2019
