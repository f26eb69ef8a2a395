"""Secure Dynamic Messaging on the card side: turning the static NDEF file into the tap's URL.

NT4H2421Gx §9.3: on an unauthenticated read the card replaces placeholders in the file with
ASCII (uppercase hex) mirrors, in this order so that the MAC sees the final text:

1. plain UID / SDMReadCtr (SDMMetaRead = E; counter MSB first in ASCII, §9.3.3), or the
   encrypted PICCData ``E(K_SDMMetaRead, IV0, tag || UID || ctrLE || random padding)`` (§9.3.4);
2. SDMENCFileData: the first half of its placeholder encrypted with SesSDMFileReadENCKey and
   IV = E(SesSDMFileReadENCKey, ctrLE || 0^13) (§9.3.6.1);
3. SDMMAC = MACt(SesSDMFileReadMACKey, DynamicFileData[SDMMACInputOffset:SDMMACOffset])
   (§9.3.8.1), with session keys from SV1/SV2 over the *mirrored* UID/counter (§9.3.9.1).
"""

from __future__ import annotations

from collections.abc import Callable

from station.emulator.files import SdmSettings
from station.ntag424 import crypto


def ascii_hex(data: bytes) -> bytes:
    return data.hex().upper().encode("ascii")


def picc_data_tag(sdm: SdmSettings, uid_len: int) -> int:
    """PICCDataTag (§9.3.4 Table 21): bit 7 UID, bit 6 counter, bits 3-0 UID length."""
    tag = 0
    if sdm.uid_mirror:
        tag |= 0x80 | uid_len
    if sdm.read_ctr:
        tag |= 0x40
    return tag


def _mirrored_context(sdm: SdmSettings, uid: bytes, ctr_le: bytes) -> tuple[bytes, bytes]:
    """UID and counter as they enter SV2: only the fields that are actually mirrored.

    With encrypted PICCData the tag says what is inside; with plain mirroring a counter whose
    offset is FFFFFF is enabled but not mirrored and stays out (§9.3.3, §9.3.9.1).
    """
    uid_part = uid if sdm.uid_mirror else b""
    if sdm.encrypted_picc_data:
        ctr_part = ctr_le if sdm.read_ctr else b""
    else:
        ctr_part = ctr_le if sdm.plain_ctr_mirrored else b""
    return uid_part, ctr_part


def render(
    static: bytes,
    sdm: SdmSettings,
    *,
    uid: bytes,
    read_ctr: int,
    keys: list[bytes],
    rng: Callable[[int], bytes],
) -> bytes:
    """The whole file as the contactless interface shows it for this read session.

    ``rng`` is asked once, for the PICCData random padding, and only when PICCData is
    encrypted; the caller caches the result for the rest of the read session (§9.3.4).
    """
    out = bytearray(static)
    ctr_le = read_ctr.to_bytes(3, "little")

    def put(offset: int | None, text: bytes) -> None:
        if offset is not None:
            out[offset : offset + len(text)] = text

    if sdm.encrypted_picc_data:
        plain = bytes([picc_data_tag(sdm, len(uid))])
        plain += uid if sdm.uid_mirror else b""
        plain += ctr_le if sdm.read_ctr else b""
        plain += rng(crypto.BLOCK - len(plain))
        enc = crypto.aes_cbc_encrypt(keys[sdm.meta_read], crypto.ZERO_IV, plain)
        put(sdm.picc_data_offset, ascii_hex(enc))
    else:
        if sdm.uid_offset is not None:
            put(sdm.uid_offset, ascii_hex(uid))
        if sdm.plain_ctr_mirrored:
            put(sdm.read_ctr_offset, ascii_hex(read_ctr.to_bytes(3, "big")))

    if sdm.file_read < len(keys):
        file_key = keys[sdm.file_read]
        if sdm.enc_file_data and sdm.enc_offset is not None and sdm.enc_length is not None:
            sv1 = crypto.sdm_session_vector(crypto.SV_SDM_ENC, uid, ctr_le)
            k_enc = crypto.cmac(file_key, sv1)
            iv = crypto.aes_ecb_encrypt(k_enc, ctr_le + bytes(13))
            half = sdm.enc_length // 2
            plain_part = bytes(static[sdm.enc_offset : sdm.enc_offset + half])
            put(sdm.enc_offset, ascii_hex(crypto.aes_cbc_encrypt(k_enc, iv, plain_part)))
        uid_part, ctr_part = _mirrored_context(sdm, uid, ctr_le)
        sv2 = crypto.sdm_session_vector(crypto.SV_SDM_MAC, uid_part, ctr_part)
        k_mac = crypto.cmac(file_key, sv2)
        start, end = int(sdm.mac_input_offset or 0), int(sdm.mac_offset or 0)
        put(sdm.mac_offset, ascii_hex(crypto.mact(k_mac, bytes(out[start:end]))))
    return bytes(out)
