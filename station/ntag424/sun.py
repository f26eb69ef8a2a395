"""SUN (Secure Unique NFC) verification for NTAG 424 DNA in AES mode, as Bolt Cards use it.

A tapped card hands over a URL whose query mirrors encrypted PICC data (``p``/``e``/
``picc_data``), optionally encrypted file data (``enc``) and a truncated CMAC (``c``/``cmac``).
This module turns that text into a verified (UID, counter) or refuses it:

1. :func:`parse_sun_url` — text in, :class:`SunParams` out; anything unparseable raises
   :class:`MalformedInput` and nothing else.
2. :func:`verify_sun_reference` — the plain, obviously-correct verifier, written straight from
   AN12196 §4.3-§4.4 with the primitives of :mod:`station.ntag424.crypto`.
3. :class:`SunVerifier` — the fast verifier: the same checks bound to one (K1, K2) pair with
   cached cipher contexts, for the station's hot loop (a Bolt Card ``p``/``c`` pair in ~2 µs).
   Its K2 half, :class:`FileReadKey`, is what :class:`~station.ntag424.keys.KeyStore` uses
   once a K1 has found the card: there is no third verifier.

Both verifiers get every AES, CMAC and subkey from :mod:`station.ntag424.crypto`, the only
module that touches ``cryptography.hazmat``.

The MAC is always compared (in constant time) before UID or counter leave this module, the way
Fernet checks its MAC before decrypting. Failures raise :class:`InvalidTap`, whose ``str()`` is
opaque and whose ``reason`` is precise for operators.

No I/O, no globals that change; randomness for :func:`compute_sun` is injectable.
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from station.ntag424 import crypto
from station.ntag424.errors import InvalidTap, MalformedInput, UsageError

__all__ = [
    "BOLT_CARD_TAG",
    "BoltCheck",
    "FileReadKey",
    "SunParams",
    "SunResult",
    "SunVerifier",
    "build_sun_url",
    "compute_sun",
    "decode_bolt_hex",
    "meta_read_decryptor",
    "parse_sun_url",
    "sdm_session_keys",
    "split_bolt_url",
    "split_picc_data",
    "verify_sun_reference",
]

BOLT_CARD_TAG: Final = 0xC7
"""PICCDataTag of a Bolt Card: UID mirrored (bit 7), counter mirrored (bit 6), UID length 7."""

_TAG_UID: Final = 0x80
_TAG_CTR: Final = 0x40
_TAG_RFU: Final = 0x30
_UID_LEN: Final = 7
_CTR_LEN: Final = 3
_PICC_LEN: Final = 16
_MAC_LEN: Final = 8
_LRP_PICC_LEN: Final = 24
_MAX_COUNTER: Final = 0xFFFFFF

# Query parameter names, most specific first (AN12196 §4.4 uses picc_data/enc/cmac and e/c;
# Bolt Cards use p/c).
_PICC_NAMES: Final = ("picc_data", "e", "p")
_ENC_NAME: Final = "enc"
_MAC_NAMES: Final = ("cmac", "c")
_KNOWN_NAMES: Final = frozenset((*_PICC_NAMES, _ENC_NAME, *_MAC_NAMES))
_HEX_RE: Final = re.compile(r"[0-9A-Fa-f]*")

_ZERO_BLOCK: Final = bytes(16)

# Hot-loop aliases (a global lookup instead of a global plus an attribute lookup).
_fromhex: Final = bytes.fromhex
_from_bytes: Final = int.from_bytes
_compare: Final = hmac.compare_digest
_SV_HEADER: Final = b"\x00\x01\x00\x80"


# ---------------------------------------------------------------------------------------------
# Data types


@dataclass(frozen=True, slots=True)
class SunParams:
    """What a SUN URL carries, decoded from hex but not yet verified.

    ``repr`` shows no value: a fresh p/c pair is a spendable tap, and reprs end up in logs and
    tracebacks.
    """

    picc_enc_data: bytes = field(repr=False)
    """Encrypted PICCData (16 bytes in AES mode)."""
    sdmmac: bytes = field(repr=False)
    """The 8-byte truncated SDMMAC from the URL."""
    enc_file_data: bytes | None = field(default=None, repr=False)
    """Encrypted SDMENCFileData (a multiple of 16 bytes) when the URL mirrors it."""
    mac_input: bytes = field(default=b"", repr=False)
    """The ASCII text the card MACed: empty for Bolt Cards, ``"<ENC>&cmac="`` with ``enc``."""

    def __post_init__(self) -> None:
        # Checked here once so that no verifier ever feeds a short block to a cached context.
        if len(self.picc_enc_data) != _PICC_LEN:
            raise MalformedInput("PICC data must be 16 bytes (AES mode)")
        if len(self.sdmmac) != _MAC_LEN:
            raise MalformedInput("the SDMMAC must be 8 bytes")
        enc = self.enc_file_data
        if enc is not None and (not enc or len(enc) % 16):
            raise MalformedInput("SDMENCFileData must be a non-empty multiple of 16 bytes")


@dataclass(frozen=True, slots=True)
class SunResult:
    """A verified tap. Only built after the SDMMAC matched."""

    uid: bytes | None
    """7-byte UID, or ``None`` when the card does not mirror it (never for Bolt Cards)."""
    counter: int | None
    """SDMReadCtr as an integer, or ``None`` when the card does not mirror it."""
    picc_data_tag: int
    enc_file_data: bytes | None = field(default=None, repr=False)
    """Decrypted SDMENCFileData, or ``None`` when the URL carries none."""

    def identity(self) -> tuple[bytes, int]:
        """(UID, counter) for replay checks; refuses taps that do not mirror both."""
        if self.uid is None or self.counter is None:
            raise InvalidTap("picc data does not mirror both uid and counter")
        return self.uid, self.counter


# ---------------------------------------------------------------------------------------------
# URL parsing


def _decode_hex(value: str, name: str) -> bytes:
    if not _HEX_RE.fullmatch(value):
        raise MalformedInput(f"parameter {name!r} is not hexadecimal")
    if len(value) % 2:
        raise MalformedInput(f"parameter {name!r} has an odd number of hex digits")
    return bytes.fromhex(value)


def parse_sun_url(url: str) -> SunParams:
    """Split a SUN URL into its mirrored values and the MAC input.

    Accepts Bolt Card URLs (``lnurlw://host/path?p=<32 hex>&c=<16 hex>``, any scheme) and
    general SDM URLs (``picc_data=``/``e=``, optional ``enc=``, ``cmac=``/``c=``). When ``enc``
    is present the card MACs the URL text from the start of the ``enc`` value up to the start
    of the MAC value (SDMMACInputOffset points at the ENC mirror), else the empty string
    (SDMMACInputOffset = SDMMACOffset). Any other text raises :class:`MalformedInput`.
    """
    if not isinstance(url, str):
        raise MalformedInput("a SUN URL must be text")
    text = url.strip()
    if not text:
        raise MalformedInput("empty input; expected a SUN URL")
    if not text.isascii():
        raise MalformedInput("a SUN URL must be ASCII")
    qpos = text.find("?")
    hpos = text.find("#")
    if qpos < 0 or (0 <= hpos < qpos):
        raise MalformedInput("the URL has no query string; expected p=... and c=... parameters")
    end = len(text) if hpos < 0 else hpos

    found: dict[str, tuple[int, int]] = {}
    pos = qpos + 1
    while pos <= end:
        amp = text.find("&", pos, end)
        seg_end = end if amp < 0 else amp
        eq = text.find("=", pos, seg_end)
        if eq >= 0:
            name = text[pos:eq]
            if name in _KNOWN_NAMES:
                if name in found:
                    raise MalformedInput(f"parameter {name!r} appears more than once")
                found[name] = (eq + 1, seg_end)
        pos = seg_end + 1

    picc_names = [n for n in _PICC_NAMES if n in found]
    mac_names = [n for n in _MAC_NAMES if n in found]
    if not picc_names:
        raise MalformedInput("missing PICC data parameter (p=, e= or picc_data=)")
    if not mac_names:
        raise MalformedInput("missing MAC parameter (c= or cmac=)")
    if len(picc_names) > 1 or len(mac_names) > 1:
        raise MalformedInput("ambiguous SUN URL: more than one PICC data or MAC parameter")
    picc_name, mac_name = picc_names[0], mac_names[0]

    p_start, p_end = found[picc_name]
    picc = _decode_hex(text[p_start:p_end], picc_name)
    if len(picc) == _LRP_PICC_LEN:
        raise MalformedInput("LRP-mode PICC data (24 bytes) is not supported; use AES mode")
    if len(picc) != _PICC_LEN:
        raise MalformedInput(f"parameter {picc_name!r} must be 32 hex digits")
    m_start, m_end = found[mac_name]
    mac = _decode_hex(text[m_start:m_end], mac_name)
    if len(mac) != _MAC_LEN:
        raise MalformedInput(f"parameter {mac_name!r} must be 16 hex digits")

    enc: bytes | None = None
    mac_input = b""
    if _ENC_NAME in found:
        e_start, e_end = found[_ENC_NAME]
        enc = _decode_hex(text[e_start:e_end], _ENC_NAME)
        if not enc or len(enc) % 16:
            raise MalformedInput("parameter 'enc' must be a non-empty multiple of 32 hex digits")
        if e_start > m_start:
            raise MalformedInput("parameter 'enc' must come before the MAC parameter")
        mac_input = text[e_start:m_start].encode("ascii")
    return SunParams(picc_enc_data=picc, sdmmac=mac, enc_file_data=enc, mac_input=mac_input)


def split_bolt_url(line: str) -> tuple[str, str] | None:
    """(p, c) hex text if ``line`` ends in exactly ``?p=<32>&c=<16>``, else ``None``.

    Only a shortcut for the common shape: a ``None`` sends the caller to :func:`parse_sun_url`,
    which gives the same answer for every URL this accepts (property-tested).
    """
    n = len(line)
    if (
        n >= 54
        and line[n - 54 : n - 51] == "?p="
        and line[n - 19 : n - 16] == "&c="
        and line.find("?") == n - 54
        and "#" not in line
    ):
        return line[n - 51 : n - 19], line[n - 16 :]
    return None


# ---------------------------------------------------------------------------------------------
# Reference verifier: straight from AN12196, one primitive call per step


def _check_key(name: str, key: bytes) -> None:
    if not isinstance(key, bytes | bytearray) or len(key) != 16:
        raise UsageError(f"{name} must be 16 bytes (AES-128)")


def split_picc_data(plain: bytes) -> tuple[int, bytes | None, bytes | None]:
    """(tag, UID, counter LE) from decrypted PICCData (NT4H2421Gx §9.3.4 PICCDataTag)."""
    tag = plain[0]
    has_uid = bool(tag & _TAG_UID)
    has_ctr = bool(tag & _TAG_CTR)
    if tag & _TAG_RFU or not (has_uid or has_ctr):
        raise InvalidTap("bad picc data tag")
    if has_uid and tag & 0x0F != _UID_LEN:
        raise InvalidTap("bad picc data tag")
    pos = 1
    uid: bytes | None = None
    ctr_le: bytes | None = None
    if has_uid:
        uid = plain[pos : pos + _UID_LEN]
        pos += _UID_LEN
    if has_ctr:
        ctr_le = plain[pos : pos + _CTR_LEN]
    return tag, uid, ctr_le


def sdm_session_keys(k_file: bytes, uid: bytes | None, ctr_le: bytes | None) -> tuple[bytes, bytes]:
    """(KSesSDMFileReadENC, KSesSDMFileReadMAC) from the SDM file read key (AN12196 §4.3).

    Only mirrored fields enter SV1/SV2: pass ``None`` for one the card does not mirror.
    """
    _check_key("the SDM file read key", k_file)
    u, c = uid or b"", ctr_le or b""
    enc = crypto.cmac(k_file, crypto.sdm_session_vector(crypto.SV_SDM_ENC, u, c))
    mac = crypto.cmac(k_file, crypto.sdm_session_vector(crypto.SV_SDM_MAC, u, c))
    return enc, mac


def _decrypt_file_data(ses_enc: bytes, ctr_le: bytes, data: bytes) -> bytes:
    """SDMENCFileData: AES-CBC under KSesSDMFileReadENC, IVe = E(KSes, ctrLE || 0^13)."""
    ive = crypto.aes_ecb_encrypt(ses_enc, ctr_le + bytes(13))
    return crypto.aes_cbc_decrypt(ses_enc, ive, data)


def verify_sun_reference(params: SunParams, k_meta: bytes, k_file: bytes) -> SunResult:
    """Verify a SUN message the slow, obvious way (AN12196 §4.4.2, §4.4.3, §4.4.4).

    ``k_meta`` is the SDM meta read key (Bolt Card K1), ``k_file`` the SDM file read key (K2).
    """
    _check_key("the SDM meta read key (K1)", k_meta)
    _check_key("the SDM file read key (K2)", k_file)
    plain = crypto.aes_cbc_decrypt(k_meta, crypto.ZERO_IV, params.picc_enc_data)
    tag, uid, ctr_le = split_picc_data(plain)
    ses_enc, ses_mac = sdm_session_keys(k_file, uid, ctr_le)
    expected = crypto.mact(ses_mac, params.mac_input)
    if not hmac.compare_digest(expected, params.sdmmac):
        raise InvalidTap("cmac mismatch")
    return _authentic_result(tag, uid, ctr_le, ses_enc, params)


def _authentic_result(
    tag: int, uid: bytes | None, ctr_le: bytes | None, ses_enc: bytes, params: SunParams
) -> SunResult:
    """The verified tap, built only after the SDMMAC matched: UID and counter are authentic."""
    enc_plain: bytes | None = None
    if params.enc_file_data is not None:
        if ctr_le is None or uid is None:
            raise InvalidTap("enc file data needs uid and counter mirroring")
        enc_plain = _decrypt_file_data(ses_enc, ctr_le, params.enc_file_data)
    counter = None if ctr_le is None else int.from_bytes(ctr_le, "little")
    return SunResult(uid=uid, counter=counter, picc_data_tag=tag, enc_file_data=enc_plain)


# ---------------------------------------------------------------------------------------------
# Fast path: the same checks with every key-only step done once


def decode_bolt_hex(p_hex: str, c_hex: str) -> tuple[bytes, bytes]:
    """(p, c) bytes from the hex text of a Bolt Card tap; :class:`MalformedInput` otherwise."""
    if len(p_hex) != 32 or len(c_hex) != 16:
        raise MalformedInput("p must be 32 hex digits and c 16 hex digits")
    try:
        p = _fromhex(p_hex)
        c = _fromhex(c_hex)
    except (ValueError, TypeError):
        raise MalformedInput("p and c must be hexadecimal") from None
    # fromhex skips whitespace: a shorter result means the text was not all hex digits
    # (and a short block must never reach a cached ECB context, which would buffer it).
    if len(p) != 16 or len(c) != 8:
        raise MalformedInput("p and c must be hexadecimal")
    return p, c


BoltCheck = Callable[[bytes, bytes], tuple[bytes, int]]
"""Decrypted PICCData and the 8-byte ``c`` in, verified (UID, counter) out."""


def _bolt_check(encrypt_block: Callable[[bytes], bytes], sub1: int) -> BoltCheck:
    """The one Bolt Card check after PICCData decryption (tag C7, empty MAC input).

    SV2 = 3CC3 0001 0080 || UID || ctrLE is PICCData[1:11] behind a fixed header, so
    (PICCData >> 40) holds tag || UID || ctr; header, tag and K2's CMAC subkey fold into one
    xor, and ``CMAC(K2, SV2) = E(K2, SV2 xor K2sub1)`` is one block on a cached encryptor.
    Built as a closure: at ~2 µs a tap, attribute and global lookups are a visible share.
    """
    cmac_empty, _ = crypto.fresh_key_cmacs()
    header = int.from_bytes(crypto.SV_SDM_MAC + _SV_HEADER, "big")
    sv_xor = ((header ^ BOLT_CARD_TAG) << 80) ^ sub1
    from_bytes, compare = _from_bytes, _compare

    def check_bolt(plain: bytes, c: bytes) -> tuple[bytes, int]:
        if plain[0] != 0xC7:  # BOLT_CARD_TAG
            raise InvalidTap("bad picc data tag")
        ses_mac = encrypt_block(((from_bytes(plain) >> 40) ^ sv_xor).to_bytes(16))
        if not compare(cmac_empty(ses_mac)[1::2], c):
            raise InvalidTap("cmac mismatch")
        return plain[1:8], from_bytes(plain[8:11], "little")

    return check_bolt


class FileReadKey:
    """K2 (SDM file read key) with what every tap needs precomputed: the K2 half of
    :class:`SunVerifier`, also used by the key store once a K1 has found the card.

    SV1/SV2 are always exactly one block, so ``CMAC(K2, SV) = E(K2, SV xor K2sub1)``. Not
    thread-safe (cached contexts).
    """

    __slots__ = ("_cmac_of", "_encrypt_block", "_sub1", "check_bolt")

    def __init__(self, k_file: bytes) -> None:
        _check_key("the SDM file read key (K2)", k_file)
        self._encrypt_block = crypto.ecb_block_encryptor(k_file)
        self._sub1 = crypto.gf128_double(int.from_bytes(self._encrypt_block(_ZERO_BLOCK), "big"))
        _, self._cmac_of = crypto.fresh_key_cmacs()
        self.check_bolt: BoltCheck = _bolt_check(self._encrypt_block, self._sub1)
        """Bolt Card check of decrypted PICCData (see :func:`_bolt_check`)."""

    def _session_key(self, sv: int) -> bytes:
        """CMAC(K2, SV) for a 16-byte SV given as an integer."""
        return self._encrypt_block((sv ^ self._sub1).to_bytes(16, "big"))

    def session_keys(self, uid: bytes | None, ctr_le: bytes | None) -> tuple[bytes, bytes]:
        """(KSesSDMFileReadENC, KSesSDMFileReadMAC); equal to :func:`sdm_session_keys`."""
        mirrored = (uid or b"") + (ctr_le or b"")
        tail = mirrored + bytes(10 - len(mirrored))
        enc = self._session_key(int.from_bytes(crypto.SV_SDM_ENC + _SV_HEADER + tail, "big"))
        mac = self._session_key(int.from_bytes(crypto.SV_SDM_MAC + _SV_HEADER + tail, "big"))
        return enc, mac

    def check(self, plain: bytes, params: SunParams) -> SunResult:
        """Any AES-mode SUN message from decrypted PICCData (same answers as the reference)."""
        tag, uid, ctr_le = split_picc_data(plain)
        ses_enc, ses_mac = self.session_keys(uid, ctr_le)
        expected = self._cmac_of(ses_mac, params.mac_input)[1::2]
        if not hmac.compare_digest(expected, params.sdmmac):
            raise InvalidTap("cmac mismatch")
        return _authentic_result(tag, uid, ctr_le, ses_enc, params)


def meta_read_decryptor(k_meta: bytes) -> Callable[[bytes], bytes]:
    """K1 (SDM meta read key) as a cached one-block decryptor: PICCData is one block, CBC
    with a zero IV, i.e. ECB. Feed it exactly 16 bytes (:class:`SunParams` ensures it)."""
    _check_key("the SDM meta read key (K1)", k_meta)
    return crypto.ecb_block_decryptor(k_meta)


class SunVerifier:
    """The fast verifier: SUN verification bound to one (K1, K2) pair, key-only steps done once.

    Two doors onto the same checks: :meth:`verify` takes any parsed SUN message and answers
    like :func:`verify_sun_reference`; :attr:`verify_bolt_hex` is the hot loop's shortcut for
    the Bolt Card shape (hex ``p``/``c`` in, (UID, counter) out). A Bolt Card tap costs two hex
    decodes, one block under K1, one block under K2, one CMAC object under the session key and
    one constant-time compare. Not thread-safe (the cached contexts are shared): give each
    thread its own verifier.
    """

    __slots__ = ("_decrypt", "_file", "verify_bolt_hex")

    def __init__(self, k_meta: bytes, k_file: bytes) -> None:
        decrypt = meta_read_decryptor(k_meta)
        file = FileReadKey(k_file)
        self._decrypt = decrypt
        self._file = file
        self.verify_bolt_hex: Callable[[str, str], tuple[bytes, int]] = _bolt_hex(
            decrypt, file.check_bolt
        )
        """Verify a Bolt Card tap from the hex text of ``p`` and ``c``: (UID, counter) out;
        :class:`MalformedInput` for text that is not 32 + 16 hex digits, :class:`InvalidTap`
        for a tap that does not verify."""

    def verify(self, params: SunParams) -> SunResult:
        """Verify any AES-mode SUN message (same answers as :func:`verify_sun_reference`)."""
        return self._file.check(self._decrypt(params.picc_enc_data), params)


def _bolt_hex(
    decrypt: Callable[[bytes], bytes], check_bolt: BoltCheck
) -> Callable[[str, str], tuple[bytes, int]]:
    """:func:`decode_bolt_hex`, K1 and :func:`_bolt_check` as one closure for the hot loop.

    The decode is :func:`decode_bolt_hex` written out (a call is ~2 % of a tap, measured);
    the crypto is not copied: ``check_bolt`` is the key store's check too.
    """
    fromhex = _fromhex

    def verify_bolt_hex(p_hex: str, c_hex: str) -> tuple[bytes, int]:
        if len(p_hex) != 32 or len(c_hex) != 16:
            raise MalformedInput("p must be 32 hex digits and c 16 hex digits")
        try:
            p = fromhex(p_hex)
            c = fromhex(c_hex)
        except (ValueError, TypeError):
            raise MalformedInput("p and c must be hexadecimal") from None
        if len(p) != 16 or len(c) != 8:
            raise MalformedInput("p and c must be hexadecimal")
        return check_bolt(decrypt(p), c)

    return verify_bolt_hex

# ---------------------------------------------------------------------------------------------
# Computing SUN messages (what the card does), for tests and the demo


def compute_sun(
    k_meta: bytes,
    k_file: bytes,
    uid: bytes,
    counter: int,
    *,
    enc_plain: bytes | None = None,
    mac_input: bytes | None = None,
    randbytes: Callable[[int], bytes] = os.urandom,
) -> SunParams:
    """Produce the values a card with these keys would mirror (AES mode, UID and counter).

    ``randbytes`` supplies the 5 bytes of PICCData random padding (inject it to replay a
    vector). With ``enc_plain`` (a multiple of 16 bytes) the file data is encrypted and the MAC
    covers ``"<ENC hex>&cmac="`` unless ``mac_input`` says otherwise.
    """
    _check_key("the SDM meta read key (K1)", k_meta)
    _check_key("the SDM file read key (K2)", k_file)
    if len(uid) != _UID_LEN:
        raise UsageError("the UID must be 7 bytes")
    if not 0 <= counter <= _MAX_COUNTER:
        raise UsageError("the SDM read counter is a 24-bit value")
    padding = randbytes(5)
    if len(padding) != 5:
        raise UsageError("randbytes(5) must return 5 bytes")
    ctr_le = counter.to_bytes(3, "little")
    plain = bytes([BOLT_CARD_TAG]) + uid + ctr_le + padding
    picc = crypto.aes_cbc_encrypt(k_meta, crypto.ZERO_IV, plain)
    ses_enc, ses_mac = sdm_session_keys(k_file, uid, ctr_le)
    enc: bytes | None = None
    if enc_plain is not None:
        if not enc_plain or len(enc_plain) % 16:
            raise UsageError("file data to encrypt must be a non-empty multiple of 16 bytes")
        ive = crypto.aes_ecb_encrypt(ses_enc, ctr_le + bytes(13))
        enc = crypto.aes_cbc_encrypt(ses_enc, ive, enc_plain)
        if mac_input is None:
            mac_input = enc.hex().upper().encode("ascii") + b"&cmac="
    if mac_input is None:
        mac_input = b""
    mac = crypto.mact(ses_mac, mac_input)
    return SunParams(picc_enc_data=picc, sdmmac=mac, enc_file_data=enc, mac_input=mac_input)


def build_sun_url(base: str, params: SunParams) -> str:
    """Render ``params`` as the card mirrors them (uppercase hex).

    Bolt Card shape ``base?p=…&c=…`` without file data; ``base?picc_data=…&enc=…&cmac=…``
    with it (the MAC input must then be ``"<ENC>&cmac="``, as :func:`compute_sun` makes it).
    """
    sep = "&" if "?" in base else "?"
    p = params.picc_enc_data.hex().upper()
    c = params.sdmmac.hex().upper()
    if params.enc_file_data is None:
        return f"{base}{sep}p={p}&c={c}"
    e = params.enc_file_data.hex().upper()
    return f"{base}{sep}picc_data={p}&enc={e}&cmac={c}"
