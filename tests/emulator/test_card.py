"""Behaviour of the emulated NTAG 424 DNA as a reader (and a merchant) would notice it.

The reader side here is a deliberately small, independent implementation built from
``crypto.py`` primitives and the datasheet's formulas (NT4H2421Gx §9.1), not the project's
``session.py``: the card is checked against the datasheet, not against its sibling.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from hypothesis import given, settings
from hypothesis import strategies as st

from station.emulator.card import TEST_ORIGINALITY_PUBLIC_KEY, EmulatedCard
from station.ntag424 import crypto, sun

SELECT_APP = bytes.fromhex("00A4040007D276000085010100")
ZERO = bytes(16)
UID = bytes.fromhex("04112233445566")
NXP_PUBLIC_KEY = bytes.fromhex(
    "048A9B380AF2EE1B98DC417FECC263F8449C7625CECE82D9B916C992DA209D68422B81EC20B65A66B5102A61596AF3379200599316A00A1410"
)


def make_rng(seed: int = 1) -> Callable[[int], bytes]:
    """Deterministic stand-in for os.urandom (the card's only source of randomness)."""
    counter = itertools.count(seed)

    def rng(n: int) -> bytes:
        return bytes((next(counter) * 37) & 0xFF for _ in range(n))

    return rng


@dataclass
class _Sess:
    key_no: int
    ti: bytes
    k_enc: bytes
    k_mac: bytes
    ctr: int = 0


class Reader:
    """Minimal PCD: EV2 authentication and CommMode plain/MAC/full, straight from §9.1."""

    def __init__(self, card: EmulatedCard) -> None:
        self.card = card
        self.s: _Sess | None = None

    def raw(self, apdu: bytes | str) -> bytes:
        return self.card.transceive(bytes.fromhex(apdu) if isinstance(apdu, str) else apdu)

    def sw(self, apdu: bytes | str) -> str:
        return self.raw(apdu)[-2:].hex().upper()

    def select_app(self) -> None:
        assert self.raw(SELECT_APP) == b"\x90\x00"

    def auth(self, key_no: int, key: bytes, *, first: bool = True, rnd_a: bytes = b"A" * 16) -> str:
        head = bytes([0x90, 0x71, 0, 0, 2, key_no, 0, 0]) if first else bytes(
            [0x90, 0x77, 0, 0, 1, key_no, 0]
        )
        r1 = self.raw(head)
        if r1[-2:] != b"\x91\xaf":
            self.s = None
            return r1[-2:].hex().upper()
        rnd_b = crypto.aes_cbc_decrypt(key, crypto.ZERO_IV, r1[:16])
        token = crypto.aes_cbc_encrypt(key, crypto.ZERO_IV, rnd_a + crypto.rotate_left(rnd_b))
        r2 = self.raw(b"\x90\xaf\x00\x00\x20" + token + b"\x00")
        if r2[-2:] != b"\x91\x00":
            self.s = None
            return r2[-2:].hex().upper()
        plain = crypto.aes_cbc_decrypt(key, crypto.ZERO_IV, r2[:-2])
        k_enc = crypto.cmac(key, crypto.auth_session_vector(crypto.SV_AUTH_ENC, rnd_a, rnd_b))
        k_mac = crypto.cmac(key, crypto.auth_session_vector(crypto.SV_AUTH_MAC, rnd_a, rnd_b))
        if first:
            assert plain[4:20] == crypto.rotate_left(rnd_a)
            self.s = _Sess(key_no, plain[:4], k_enc, k_mac)
        else:
            assert plain == crypto.rotate_left(rnd_a) and self.s is not None
            self.s = _Sess(key_no, self.s.ti, k_enc, k_mac, self.s.ctr)
        return "9100"

    def _iv(self, label: bytes, ctr: int) -> bytes:
        assert self.s is not None
        block = label + self.s.ti + ctr.to_bytes(2, "little") + bytes(8)
        return crypto.aes_ecb_encrypt(self.s.k_enc, block)

    def cmd(
        self, ins: int, header: bytes = b"", data: bytes = b"", mode: str = "plain",
        resp: str | None = None, frame: int = 250,
    ) -> tuple[bytes, str]:
        """Send one native command (chaining long bodies) and unwrap the answer."""
        resp = resp or mode
        s = self.s
        body = data
        if s is not None and mode != "plain":
            if mode == "full" and data:
                ivc = self._iv(b"\xa5\x5a", s.ctr)
                body = crypto.aes_cbc_encrypt(s.k_enc, ivc, crypto.pad_m2(data))
            ctr = s.ctr.to_bytes(2, "little")
            body += crypto.mact(s.k_mac, bytes([ins]) + ctr + s.ti + header + body)
        payload = header + body
        chunks = [payload[i : i + frame] for i in range(0, len(payload), frame)] or [b""]
        out = b""
        for i, chunk in enumerate(chunks):
            code = ins if i == 0 else 0xAF
            lc_data = bytes([len(chunk)]) + chunk if chunk else b""
            apdu = bytes([0x90, code, 0, 0]) + lc_data + b"\x00"
            r = self.raw(apdu)
            if r != b"\x91\xaf":
                break  # the card refused part-way (or this was the last frame)
        while r[-2:] == b"\x91\xaf":
            out += r[:-2]
            r = self.raw("90AF000000")
        out += r[:-2]
        sw = r[-2:].hex().upper()
        if s is not None:
            s.ctr += 1
        if sw != "9100":
            self.s = None
            return out, sw
        if s is not None and resp != "plain" and out:
            out, mac = out[:-8], out[-8:]
            ctr = s.ctr.to_bytes(2, "little")
            assert mac == crypto.mact(s.k_mac, b"\x00" + ctr + s.ti + out), "response MAC"
            if resp == "full" and out:
                ivr = self._iv(b"\x5a\xa5", s.ctr)
                out = crypto.unpad_m2(crypto.aes_cbc_decrypt(s.k_enc, ivr, out))
        return out, sw

    def read_binary(self, p1p2: str = "0000", le: str = "00") -> bytes:
        r = self.raw("00B0" + p1p2 + le)
        assert r[-2:] == b"\x90\x00", r.hex()
        return r[:-2]


@pytest.fixture
def card() -> EmulatedCard:
    return EmulatedCard.factory(uid=UID, rng=make_rng())


@pytest.fixture
def reader(card: EmulatedCard) -> Reader:
    return Reader(card)


# -- ISO layer, reader pseudo-APDUs --------------------------------------------------------


def test_factory_cc_file_reads_through_iso_select_and_read_binary(reader: Reader) -> None:
    reader.select_app()
    assert reader.sw("00A4000C02E103") == "9000"
    cc = reader.read_binary()
    assert cc[:2] == b"\x00\x17" and len(cc) == 32
    assert cc.hex().upper().startswith("001720010000FF0406E104010000000506E10500808283")
    assert reader.read_binary("0003", "04") == cc[3:7]
    assert reader.read_binary("8200", "02") == b"\x00\x00"  # short file id 2: the empty NDEF
    assert reader.sw("00B0830000") == "6982"  # short file id 3: proprietary, read needs key 2


def test_iso_errors_follow_the_datasheet_tables(reader: Reader) -> None:
    assert reader.sw("00B0000010") == "6985"  # no file selected
    assert reader.sw("00A4040007D2760000850199") == "6A82"
    assert reader.sw("00A4000C02E104") == "6A82"  # EF not reachable from the PICC level
    reader.select_app()
    assert reader.sw("00A4000C02E1FF") == "6A82"
    assert reader.sw("00A4001002E104") == "6A86"
    assert reader.sw("00A4000C02E104") == "9000"
    assert reader.sw("00B0010000") == "6A86"  # offset 256 is past the 256-byte file
    assert reader.sw("00D6000002AABB") == "9000"  # NDEF is free to write
    assert reader.read_binary("0000", "02") == b"\xaa\xbb"
    assert reader.sw("00A4000C02E103") == "9000"
    assert reader.sw("00D6000001FF") == "6982"  # CC: write needs key 0
    reader.select_app()
    assert reader.sw("00A4000C02E105") == "9000"
    assert reader.sw("00B0000010") == "6982"  # proprietary: read needs key 2
    assert reader.sw("80B0000010") == "6E00"
    assert reader.sw("00CA000000") == "6D00"
    assert reader.sw("00B000") == "6700"


def test_reader_pseudo_apdus_like_an_acr122u(card: EmulatedCard, reader: Reader) -> None:
    assert reader.raw("FFCA000000") == UID + b"\x90\x00"
    ats = reader.raw("FFCA010000")
    assert ats[-2:] == b"\x90\x00" and ats[0] == len(ats) - 2
    assert reader.sw("FF00400D0403000101") == "9000"
    assert card.last_feedback is not None and card.last_feedback.led_state == 0x0D
    assert card.last_feedback.repetitions == 0x01
    assert reader.sw("FF12000000") == "6A81"


# -- GetVersion, Read_Sig, GetCardUID ------------------------------------------------------


def test_get_version_three_frames(reader: Reader) -> None:
    r1 = reader.raw("9060000000")
    assert r1.hex().upper() == "04040230001105" "91AF"
    r2 = reader.raw("90AF000000")
    assert r2.hex().upper() == "04040201021105" "91AF"
    r3 = reader.raw("90AF000000")
    assert r3[:7] == UID and len(r3) == 14 + 2 and r3[-2:] == b"\x91\x00"
    assert reader.sw("90AF000000") == "911C"  # nothing left to continue


def test_get_version_authenticated_carries_a_mac_over_all_parts(reader: Reader) -> None:
    reader.select_app()
    assert reader.auth(0, ZERO) == "9100"
    data, sw = reader.cmd(0x60, mode="mac")
    assert sw == "9100" and data[:7] == bytes.fromhex("04040230001105") and data[14:21] == UID


def test_read_sig_is_a_test_signature_not_nxps(reader: Reader) -> None:
    r = reader.raw("903C0000010000")
    assert r[-2:] == b"\x91\x00" and len(r) == 58
    sig = utils.encode_dss_signature(int.from_bytes(r[:28], "big"), int.from_bytes(r[28:56], "big"))
    algo = ec.ECDSA(utils.Prehashed(hashes.SHA224()))
    ours = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP224R1(), TEST_ORIGINALITY_PUBLIC_KEY)
    ours.verify(sig, bytes(21) + UID, algo)
    nxp = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP224R1(), NXP_PUBLIC_KEY)
    with pytest.raises(InvalidSignature):
        nxp.verify(sig, bytes(21) + UID, algo)


def test_get_card_uid_needs_authentication_and_is_encrypted(reader: Reader) -> None:
    reader.select_app()
    assert reader.sw("9051000000") == "91AE"
    assert reader.auth(3, ZERO) == "9100"
    uid, sw = reader.cmd(0x51, mode="full")
    assert (uid, sw) == (UID, "9100")


# -- authentication ------------------------------------------------------------------------


def test_authentication_errors(reader: Reader) -> None:
    assert reader.auth(0, ZERO) == "911C"  # PICC level: application keys not available
    reader.select_app()
    assert reader.auth(5, ZERO) == "9140"
    assert reader.auth(0, ZERO, first=False) == "919D"  # NonFirst needs a session
    assert reader.sw("9071000002000100") == "917E"  # LenCap says 1, no PCDcap2 byte
    assert reader.auth(0, b"\x01" * 16) == "91AE"
    assert reader.auth(0, ZERO) == "9100"


def test_consecutive_failures_slow_authentication_down_until_success(reader: Reader) -> None:
    reader.select_app()
    wrong = b"\x55" * 16
    assert reader.auth(1, wrong) == "91AE"
    assert reader.auth(1, wrong) == "91AE"
    assert reader.auth(1, ZERO) == "91AD"  # the delay has to be spent first
    answers = [reader.auth(1, ZERO) for _ in range(3)]
    assert answers[0] == "9100"
    assert reader.auth(1, wrong) == "91AE"  # success reset the consecutive count ...
    assert reader.auth(1, ZERO) == "9100"  # ... so one failure costs no delay


def test_key_blocked_after_tot_fail_ctr_limit_and_freed_by_change_key(reader: Reader) -> None:
    reader.select_app()
    assert reader.auth(0, ZERO) == "9100"
    # SetConfiguration 0Ah: enabled, limit 2, decrement 1.
    _, sw = reader.cmd(0x5C, b"\x0a", bytes.fromhex("0102000100"), mode="full")
    assert sw == "9100"
    for _ in range(2):
        while (answer := reader.auth(4, b"\x77" * 16)) == "91AD":
            pass
        assert answer == "91AE"
    while (answer := reader.auth(4, ZERO)) == "91AD":
        pass
    assert answer == "919D"  # blocked
    while (answer := reader.auth(0, ZERO)) == "91AD":
        pass
    assert answer == "9100"
    new = b"\x44" * 16
    key_data = crypto.xor(new, ZERO) + b"\x01" + crypto.crc32nk(new)
    assert reader.cmd(0xC4, b"\x04", key_data, mode="full", resp="mac")[1] == "9100"
    assert reader.auth(4, new) == "9100"


def test_plain_commands_advance_cmd_ctr_and_errors_end_the_session(reader: Reader) -> None:
    reader.select_app()
    assert reader.auth(0, ZERO) == "9100"
    # WriteData to the free NDEF file goes plain but still counts (§9.1.8) ...
    assert reader.cmd(0x8D, bytes.fromhex("02000000020000"), b"\x00\x00")[1] == "9100"
    # ... so the next MACed command only verifies if both sides counted it.
    assert reader.cmd(0xF5, b"\x02", mode="mac")[1] == "9100"
    assert reader.cmd(0xF5, b"\x09", mode="mac")[1] == "91F0"
    assert reader.sw("9051000000") == "91AE"  # the error ended the authenticated state


def test_bad_command_mac_is_an_integrity_error(reader: Reader) -> None:
    reader.select_app()
    assert reader.auth(0, ZERO) == "9100"
    assert reader.sw("90F5000009" "02" + "00" * 8 + "00") == "911E"
    assert reader.sw("9051000000") == "91AE"


def test_selecting_the_application_again_ends_authentication(reader: Reader) -> None:
    reader.select_app()
    assert reader.auth(0, ZERO) == "9100"
    reader.select_app()
    assert reader.sw("9051000000") == "91AE"


def test_non_first_keeps_ti_and_counter(reader: Reader) -> None:
    reader.select_app()
    assert reader.auth(0, ZERO) == "9100"
    assert reader.cmd(0x64, b"\x01", mode="mac") == (b"\x00", "9100")
    assert reader.auth(2, ZERO, first=False, rnd_a=b"B" * 16) == "9100"
    assert reader.s is not None and reader.s.ctr == 1
    data, sw = reader.cmd(0xAD, bytes.fromhex("03000000100000"), mode="mac", resp="full")
    assert (data, sw) == (bytes(16), "9100")


# -- files and secure messaging ------------------------------------------------------------


def test_factory_file_settings(reader: Reader) -> None:
    reader.select_app()
    expected = {1: "000000E0200000", 2: "0000E0EE000100", 3: "00033023800000"}
    for file_no, settings_hex in expected.items():
        data, sw = reader.cmd(0xF5, bytes([file_no]))
        assert (data.hex().upper(), sw) == (settings_hex, "9100")
    for key_no in range(5):
        assert reader.cmd(0x64, bytes([key_no])) == (b"\x00", "9100")


def test_proprietary_file_needs_its_keys_and_goes_full(reader: Reader) -> None:
    reader.select_app()
    assert reader.cmd(0xAD, bytes.fromhex("03000000000000"))[1] == "91AE"
    assert reader.auth(3, ZERO) == "9100"
    payload = bytes(range(128))
    assert reader.cmd(0x8D, bytes.fromhex("03000000800000"), payload, mode="full",
                      resp="mac")[1] == "9100"
    data, sw = reader.cmd(0xAD, bytes.fromhex("03000000000000"), mode="mac", resp="full")
    assert (data, sw) == (payload, "9100")
    assert reader.cmd(0xAD, bytes.fromhex("03100000F00000"), mode="mac")[1] == "91BE"


def test_long_writes_and_reads_use_91af_chaining(reader: Reader) -> None:
    reader.select_app()
    assert reader.auth(0, ZERO) == "9100"
    # NDEF file to CommMode.Full, all rights key 0: 256 bytes no longer fit one frame.
    assert reader.cmd(0x5F, b"\x02", bytes.fromhex("030000"), mode="full", resp="mac")[1] == "9100"
    payload = bytes((i * 7) & 0xFF for i in range(256))
    _, sw = reader.cmd(0x8D, bytes.fromhex("02000000000100"), payload, mode="full", resp="mac")
    assert sw == "9100"
    data, sw = reader.cmd(0xAD, bytes.fromhex("02000000000000"), mode="mac", resp="full")
    assert (data, sw) == (payload, "9100")


def test_change_file_settings_validation(reader: Reader) -> None:
    reader.select_app()
    assert reader.cmd(0xF5, b"\x02")[1] == "9100"
    assert reader.cmd(0x5F, b"\x02", bytes.fromhex("0000E0"))[1] == "91AE"  # Change is key 0
    assert reader.auth(0, ZERO) == "9100"
    cases = {
        "40EEEEC1FFF2" "430000" "430000": "919E",  # MetaRead F while UID mirrored
        "40EEEEC1FF12" "200000" "300000" "300000": "919E",  # MAC overlaps PICCData
        "40EEEEC1FF12" "200000" "430000": "917E",  # one offset missing
        "40EEEEC0FF12" "200000" "430000" "430000": "919E",  # binary encoding unsupported
        "40EEEEE1FF12" "200000" "430000" "430000" "000000": "919E",  # limit <= counter
    }
    for data_hex, want in cases.items():
        answer = reader.cmd(0x5F, b"\x02", bytes.fromhex(data_hex), mode="full", resp="mac")
        assert answer[1] == want, data_hex
        assert reader.auth(0, ZERO) == "9100"
    sdm_on_file3 = bytes.fromhex("40EEEEC1FF12" "200000" "430000" "430000")
    assert reader.cmd(0x5F, b"\x03", sdm_on_file3, mode="full", resp="mac")[1] == "919D"


def test_change_key_rules(reader: Reader) -> None:
    reader.select_app()
    assert reader.auth(1, ZERO) == "9100"
    new = b"\x11" * 16
    good = crypto.xor(new, ZERO) + b"\x05" + crypto.crc32nk(new)
    assert reader.cmd(0xC4, b"\x02", good, mode="full", resp="mac")[1] == "91AE"  # needs key 0
    assert reader.auth(0, ZERO) == "9100"
    bad_crc = good[:17] + bytes(4)
    assert reader.cmd(0xC4, b"\x02", bad_crc, mode="full", resp="mac")[1] == "911E"
    assert reader.auth(0, ZERO) == "9100"
    assert reader.cmd(0xC4, b"\x02", good, mode="full", resp="mac")[1] == "9100"
    assert reader.cmd(0x64, b"\x02", mode="mac") == (b"\x05", "9100")
    key0 = b"\x22" * 16
    assert reader.cmd(0xC4, b"\x00", key0 + b"\x07", mode="full", resp="plain") == (b"", "9100")
    assert reader.sw("9051000000") == "91AE"  # changing key 0 ended the session
    assert reader.auth(0, ZERO) == "91AE"
    assert reader.auth(0, key0) == "9100"
    assert reader.auth(2, new, first=False) == "9100"


def test_set_configuration_errors(reader: Reader) -> None:
    reader.select_app()
    assert reader.auth(0, ZERO) == "9100"
    assert reader.cmd(0x5C, b"\x07", b"\x00", mode="full", resp="mac")[1] == "919E"
    assert reader.auth(0, ZERO) == "9100"
    assert reader.cmd(0x5C, b"\x00", b"\x00\x00", mode="full", resp="mac")[1] == "917E"
    assert reader.auth(0, ZERO) == "9100"
    assert reader.cmd(0x5C, b"\x0b", b"\x00", mode="full", resp="mac")[1] == "9100"
    reader.card.deselect()
    assert reader.raw("9060000000")[2] == 0x82  # standard back modulation shows in HWSubType


# -- Secure Dynamic Messaging --------------------------------------------------------------

TEMPLATE = "lnurlw://pay.example/ln?p=" + "0" * 32 + "&c=" + "0" * 16


def _ndef(url: str) -> bytes:
    assert url.startswith("lnurlw://")
    payload = b"\x00" + url.encode()
    record = bytes([0xD1, 0x01, len(payload), 0x55]) + payload
    return len(record).to_bytes(2, "big") + record


def _bolt_settings(url: str, extra_options: int = 0, limit: int | None = None) -> bytes:
    p_at = 7 + url.index("p=") + 2
    c_at = 7 + url.index("c=") + 2
    options = 0xC1 | extra_options
    data = bytes([0x40]) + bytes.fromhex("00E0") + bytes([options]) + bytes.fromhex("FF12")
    data += p_at.to_bytes(3, "little") + c_at.to_bytes(3, "little") * 2
    if limit is not None:
        data += limit.to_bytes(3, "little")
    return data


def provision(
    reader: Reader, k1: bytes = ZERO, k2: bytes = ZERO, extra_options: int = 0,
    limit: int | None = None,
) -> None:
    """Write the template, switch SDM on; keys 1 (meta read) and 2 (file read) as given."""
    reader.select_app()
    assert reader.auth(0, ZERO) == "9100"
    ndef = _ndef(TEMPLATE)
    header = b"\x02\x00\x00\x00" + len(ndef).to_bytes(3, "little")
    assert reader.cmd(0x8D, header, ndef)[1] == "9100"
    settings = _bolt_settings(TEMPLATE, extra_options, limit)
    assert reader.cmd(0x5F, b"\x02", settings, mode="full", resp="mac")[1] == "9100"
    for key_no, key in ((1, k1), (2, k2)):
        if key != ZERO:
            data = crypto.xor(key, ZERO) + b"\x01" + crypto.crc32nk(key)
            assert reader.cmd(0xC4, bytes([key_no]), data, mode="full", resp="mac")[1] == "9100"
    reader.card.deselect()
    reader.s = None


def tap(reader: Reader) -> str:
    reader.select_app()
    assert reader.sw("00A4000C02E104") == "9000"
    data = reader.read_binary()
    return data[7 : 2 + int.from_bytes(data[:2], "big")].decode()


def verify(url: str, k1: bytes, k2: bytes) -> tuple[bytes, int]:
    """Reference SUN verification from crypto.py primitives (AN12196 §4.4)."""
    p = bytes.fromhex(url.split("p=")[1][:32])
    c = url.split("c=")[1][:16]
    picc = crypto.aes_cbc_decrypt(k1, crypto.ZERO_IV, p)
    assert picc[0] == 0xC7
    uid, ctr_le = picc[1:8], picc[8:11]
    k_mac = crypto.cmac(k2, crypto.sdm_session_vector(crypto.SV_SDM_MAC, uid, ctr_le))
    assert crypto.mact(k_mac, b"").hex().upper() == c, "SDMMAC"
    return uid, int.from_bytes(ctr_le, "little")


def test_every_tap_increments_the_counter_and_verifies(reader: Reader) -> None:
    k1, k2 = b"\x01" * 16, b"\x02" * 16
    provision(reader, k1, k2)
    seen = []
    for expected_ctr in range(1, 6):
        url = tap(reader)
        assert url.startswith("lnurlw://pay.example/ln?p=")
        assert verify(url, k1, k2) == (UID, expected_ctr)
        seen.append(url)
    assert len(set(seen)) == 5


def test_counter_rule_same_read_type_reuses_different_command_increments(reader: Reader) -> None:
    provision(reader)
    reader.select_app()
    reader.sw("00A4000C02E104")
    first = reader.read_binary("0000", "80")
    second = reader.read_binary("0080", "80")  # chunked read of the same message
    url = (first + second)[7 : 2 + int.from_bytes(first[:2], "big")].decode()
    assert verify(url, ZERO, ZERO)[1] == 1
    assert reader.read_binary("0000", "80") == first  # same padding, same counter
    data, sw = reader.cmd(0xAD, bytes.fromhex("02000000000000"))  # other read type: +1
    assert sw == "9100"
    assert verify(data[7 : 2 + int.from_bytes(data[:2], "big")].decode(), ZERO, ZERO)[1] == 2
    assert reader.card.sdm_read_counter() == 2
    assert verify(tap(reader), ZERO, ZERO)[1] == 3  # the selects in between count as "other"


def test_authenticated_reads_show_the_static_file_and_do_not_count(reader: Reader) -> None:
    provision(reader)
    reader.select_app()
    assert reader.auth(0, ZERO) == "9100"
    data, sw = reader.cmd(0xAD, bytes.fromhex("02000000000000"))
    assert sw == "9100"
    assert TEMPLATE.encode() in data
    assert reader.card.sdm_read_counter() == 0
    assert reader.sw("00A4000C02E104") == "9000"
    assert reader.sw("00B0000000") == "6982"  # ISOReadBinary: AuthenticatedEV2 not allowed


def test_read_counter_limit(reader: Reader) -> None:
    provision(reader, extra_options=0x20, limit=3)
    for ctr in (1, 2, 3):
        assert verify(tap(reader), ZERO, ZERO)[1] == ctr
    reader.select_app()
    reader.sw("00A4000C02E104")
    assert reader.sw("00B0000000") == "6982"
    assert reader.cmd(0xAD, bytes.fromhex("02000000000000"))[1] == "919D"
    assert reader.auth(0, ZERO) == "9100"  # authenticated reading still works
    assert reader.cmd(0xAD, bytes.fromhex("02000000100000"))[1] == "9100"


def test_get_file_counters(reader: Reader) -> None:
    reader.select_app()
    assert reader.cmd(0xF6, b"\x02")[1] == "919D"  # no SDM yet
    provision(reader)
    tap(reader)
    tap(reader)
    assert reader.cmd(0xF6, b"\x02")[1] == "919D"  # SDMCtrRet is F in the Bolt Card layout
    reader.select_app()
    assert reader.auth(0, ZERO) == "9100"
    settings = bytearray(_bolt_settings(TEMPLATE))
    settings[4:6] = bytes.fromhex("FE12")  # SDMCtrRet = E (free)
    assert reader.cmd(0x5F, b"\x02", bytes(settings), mode="full", resp="mac")[1] == "9100"
    reader.s = None
    reader.card.deselect()
    reader.select_app()
    assert reader.cmd(0xF6, b"\x02") == (bytes.fromhex("0200000000"), "9100")


def test_plain_uid_and_counter_mirror(reader: Reader) -> None:
    url = "lnurlw://x.example/?u=" + "0" * 14 + "x" + "0" * 6 + "&m=" + "0" * 16
    u_at, c_at, m_at = 7 + url.index("u=") + 2, 7 + url.index("x") + 1, 7 + url.index("m=") + 2
    reader.select_app()
    assert reader.auth(0, ZERO) == "9100"
    ndef = _ndef(url)
    header = b"\x02\x00\x00\x00" + len(ndef).to_bytes(3, "little")
    assert reader.cmd(0x8D, header, ndef)[1] == "9100"
    offsets = b"".join(x.to_bytes(3, "little") for x in (u_at, c_at, u_at, m_at))
    data = bytes.fromhex("40E0EEC1FFE2") + offsets  # MetaRead E (plain), FileRead key 2
    assert reader.cmd(0x5F, b"\x02", data, mode="full", resp="mac")[1] == "9100"
    reader.card.deselect()
    for ctr in (1, 2):
        text = tap(reader)
        assert text[text.index("u=") + 2 :][:14] == UID.hex().upper()
        assert text[text.index("x") + 1 :][:6] == f"{ctr:06X}"  # ASCII counter: MSB first
        ctr_le = ctr.to_bytes(3, "little")
        k_mac = crypto.cmac(ZERO, crypto.sdm_session_vector(crypto.SV_SDM_MAC, UID, ctr_le))
        mac_input = text[text.index("u=") + 2 : text.index("m=") + 2].encode()
        assert text[text.index("m=") + 2 :][:16] == crypto.mact(k_mac, mac_input).hex().upper()


@settings(max_examples=15, deadline=None)
@given(
    uid=st.binary(min_size=6, max_size=6).map(lambda b: b"\x04" + b),
    k1=st.binary(min_size=16, max_size=16),
    k2=st.binary(min_size=16, max_size=16),
    start=st.integers(min_value=0, max_value=0xFFFFF0),
)
def test_sun_verifies_for_any_keys_uid_and_counter(
    uid: bytes, k1: bytes, k2: bytes, start: int
) -> None:
    card = EmulatedCard.factory(uid=uid, rng=make_rng(start & 0xFF))
    reader = Reader(card)
    provision(reader, k1, k2)
    state = card.to_state()
    state["files"]["2"]["sdm_read_ctr"] = start
    reader.card = EmulatedCard.from_state(state, rng=make_rng())
    assert verify(tap(reader), k1, k2) == (uid, start + 1)
    result = sun.verify_sun_reference(sun.parse_sun_url(tap(reader)), k1, k2)
    assert result.identity() == (uid, start + 2)


def test_counter_stops_at_ffffff(reader: Reader) -> None:
    provision(reader)
    state = reader.card.to_state()
    state["files"]["2"]["sdm_read_ctr"] = 0xFFFFFE
    reader.card = EmulatedCard.from_state(state, rng=make_rng())
    assert verify(tap(reader), ZERO, ZERO)[1] == 0xFFFFFF
    reader.select_app()
    reader.sw("00A4000C02E104")
    assert reader.sw("00B0000000") == "6982"


# -- odds and ends ---------------------------------------------------------------------------


def test_select_by_file_identifier_and_parent(reader: Reader) -> None:
    assert reader.sw("00A4000002E110") == "9000"  # the NDEF application by its ISO FID
    assert reader.sw("00A4020C02E104") == "9000"
    assert reader.read_binary("0000", "02") == b"\x00\x00"
    assert reader.sw("00A4030C00") == "9000"  # back to the PICC level
    assert reader.sw("00B0000002") == "6985"  # no file selected any more
    assert reader.sw("00A4000C023F00") == "9000"
    assert reader.auth(0, ZERO) == "911C"


def test_a_new_command_aborts_get_version(reader: Reader) -> None:
    assert reader.sw("9060000000") == "91AF"
    assert reader.sw("903C0000010000") == "9100"
    assert reader.sw("90AF000000") == "911C"


def test_cmd_ctr_exhausted_is_refused_like_a_bad_mac(card: EmulatedCard, reader: Reader) -> None:
    card.install_session(0, b"TI00", ZERO, ZERO, cmd_ctr=0xFFFF)
    reader.s = _Sess(0, b"TI00", ZERO, ZERO, 0xFFFF)
    assert reader.cmd(0xF5, b"\x02", mode="mac")[1] == "911E"


def test_chained_secure_writes_can_be_disabled(reader: Reader) -> None:
    reader.select_app()
    assert reader.auth(0, ZERO) == "9100"
    assert reader.cmd(0x5F, b"\x02", bytes.fromhex("030000"), mode="full", resp="mac")[1] == "9100"
    assert reader.cmd(0x5C, b"\x04", b"\x04\x00", mode="full", resp="mac")[1] == "9100"
    header = bytes.fromhex("02000000000100")
    assert reader.cmd(0x8D, header, bytes(256), mode="full", resp="mac")[1] == "919D"
    assert reader.auth(0, ZERO) == "9100"
    small = bytes.fromhex("02000000100000")
    assert reader.cmd(0x8D, small, bytes(16), mode="full", resp="mac")[1] == "9100"


def test_same_rng_same_card_same_answers() -> None:
    """All randomness comes from the injected rng: two cards, one script, one transcript."""
    transcripts = []
    for _ in range(2):
        reader = Reader(EmulatedCard.factory(uid=UID, rng=make_rng(7)))
        provision(reader)
        transcripts.append([tap(reader) for _ in range(3)] + [reader.raw("9071000002000000").hex()])
    assert transcripts[0] == transcripts[1]


def test_lrp_request_falls_back_to_the_aes_answer(reader: Reader) -> None:
    """DS Table 19: a card in AES mode answers an LRP request (PCDCap2.1 = 02) with the
    17-byte EV2First response, letting the reader fall back to AES."""
    reader.select_app()
    r = reader.raw("9071000003" "00" "01" "02" "00")
    assert len(r) == 16 + 2 and r[-2:] == b"\x91\xaf"
