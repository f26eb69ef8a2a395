"""The NDEF file of a Bolt Card: one URI record, its NLEN prefix, and the SUN mirror offsets.

Formats: NFC Forum Type 4 Tag (the NDEF file starts with NLEN, 2 bytes big-endian), NDEF record
header (MB ME CF SR IL TNF), URI RTD identifier codes (NFC Forum URI RTD 1.0 §3.2.2). An
``lnurlw://`` URL has no abbreviation, so it is stored whole after code ``00``.

The SDM offsets count from the start of the file, NLEN included (NT4H2421Gx §9.3; AN12196 Table
18/19: the ``e=`` value of ``https://choose.url.com/ntag424?e=…&c=…`` sits at offset 0x20).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from station.ntag424.errors import ProtocolError, UsageError

NDEF_FILE_SIZE: Final = 256
NLEN_SIZE: Final = 2

URI_PREFIXES: Final[tuple[str, ...]] = (
    "",
    "http://www.",
    "https://www.",
    "http://",
    "https://",
    "tel:",
    "mailto:",
    "ftp://anonymous:anonymous@",
    "ftp://ftp.",
    "ftps://",
    "sftp://",
    "smb://",
    "nfs://",
    "ftp://",
    "dav://",
    "news:",
    "telnet://",
    "imap:",
    "rtsp://",
    "urn:",
    "pop:",
    "sip:",
    "sips:",
    "tftp:",
    "btspp://",
    "btl2cap://",
    "btgoep://",
    "tcpobex://",
    "irdaobex://",
    "file://",
    "urn:epc:id:",
    "urn:epc:tag:",
    "urn:epc:pat:",
    "urn:epc:raw:",
    "urn:epc:",
    "urn:nfc:",
)

_MB: Final = 0x80
_ME: Final = 0x40
_CF: Final = 0x20
_SR: Final = 0x10
_IL: Final = 0x08
_TNF_WELL_KNOWN: Final = 0x01

PICC_PLACEHOLDER: Final = "0" * 32
"""``p=`` value: 16 bytes of encrypted PICC data as 32 hex characters."""
MAC_PLACEHOLDER: Final = "0" * 16
"""``c=`` value: 8-byte MACt as 16 hex characters."""


def _prefix_for(url: str) -> tuple[int, str]:
    best = 0
    for code, prefix in enumerate(URI_PREFIXES):
        if prefix and url.startswith(prefix) and len(prefix) > len(URI_PREFIXES[best]):
            best = code
    return best, url[len(URI_PREFIXES[best]) :]


def uri_record(url: str) -> bytes:
    """One NDEF message holding one well-known ``U`` record for ``url``."""
    code, rest = _prefix_for(url)
    payload = bytes([code]) + rest.encode("utf-8")
    if len(payload) < 256:
        return bytes([_MB | _ME | _SR | _TNF_WELL_KNOWN, 1, len(payload)]) + b"U" + payload
    head = bytes([_MB | _ME | _TNF_WELL_KNOWN, 1]) + len(payload).to_bytes(4, "big")
    return head + b"U" + payload


def ndef_file(message: bytes) -> bytes:
    """``NLEN || message`` as stored in the NDEF file (not padded)."""
    if len(message) + NLEN_SIZE > NDEF_FILE_SIZE:
        raise UsageError(
            f"NDEF message of {len(message)} bytes does not fit the 256-byte file "
            "(254 bytes after NLEN); shorten the URL"
        )
    return len(message).to_bytes(2, "big") + message


def message_from_file(data: bytes) -> bytes:
    """Cut the NDEF message out of the file contents using NLEN."""
    if len(data) < NLEN_SIZE:
        raise ProtocolError("NDEF file shorter than its NLEN field")
    nlen = int.from_bytes(data[:2], "big")
    if nlen == 0:
        raise ProtocolError("NDEF file is empty (NLEN = 0)")
    if NLEN_SIZE + nlen > len(data):
        raise ProtocolError(f"NLEN={nlen} runs past the {len(data) - 2} bytes read")
    return data[NLEN_SIZE : NLEN_SIZE + nlen]


def parse_uri_record(message: bytes) -> str:
    """The URL of the first record, which must be a well-known URI record."""
    if len(message) < 3:
        raise ProtocolError("NDEF message too short")
    header = message[0]
    if header & 0x07 != _TNF_WELL_KNOWN or header & _CF:
        raise ProtocolError(f"first NDEF record is not a well-known record (header {header:02X})")
    type_len = message[1]
    pos = 2
    if header & _SR:
        payload_len = message[pos]
        pos += 1
    else:
        if len(message) < pos + 4:
            raise ProtocolError("NDEF record header truncated")
        payload_len = int.from_bytes(message[pos : pos + 4], "big")
        pos += 4
    id_len = 0
    if header & _IL:
        if len(message) <= pos:
            raise ProtocolError("NDEF record header truncated")
        id_len = message[pos]
        pos += 1
    rtype = message[pos : pos + type_len]
    pos += type_len + id_len
    if rtype != b"U":
        raise ProtocolError(f"first NDEF record has type {rtype!r}, not a URI ('U')")
    payload = message[pos : pos + payload_len]
    if len(payload) != payload_len or not payload:
        raise ProtocolError("URI record payload truncated")
    code = payload[0]
    if code >= len(URI_PREFIXES):
        raise ProtocolError(f"URI identifier code {code:02X} is reserved")
    try:
        rest = payload[1:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError("URI record is not UTF-8") from exc
    return URI_PREFIXES[code] + rest


def url_from_file(data: bytes) -> str:
    """The URL stored in an NDEF file read from offset 0 (NLEN first)."""
    return parse_uri_record(message_from_file(data))


@dataclass(frozen=True)
class BoltCardLayout:
    """A Bolt Card URL template laid out in the NDEF file, with its SDM offsets."""

    template: str
    file_data: bytes
    picc_data_offset: int
    mac_offset: int

    @property
    def read_length(self) -> int:
        """Bytes to ReadBinary from offset 0 to get the whole message (NLEN included)."""
        return len(self.file_data)


def bolt_card_template(base_url: str) -> str:
    """``base_url`` with ``p=<32 zeros>&c=<16 zeros>`` appended (Bolt Card convention)."""
    sep = "&" if "?" in base_url else "?"
    return f"{base_url}{sep}p={PICC_PLACEHOLDER}&c={MAC_PLACEHOLDER}"


def bolt_card_layout(template: str, picc_param: str = "p", mac_param: str = "c") -> BoltCardLayout:
    """Encode ``template`` and find where the card must mirror ``p`` (PICC data) and ``c`` (MAC).

    The template must contain ``p=`` followed by 32 ``0`` and ``c=`` followed by 16 ``0`` (the
    placeholder the card overwrites on each read), ``c`` after ``p``.
    """
    p_marker = f"{picc_param}={PICC_PLACEHOLDER}"
    c_marker = f"{mac_param}={MAC_PLACEHOLDER}"
    p_at = _param_index(template, p_marker)
    c_at = _param_index(template, c_marker)
    if p_at < 0 or c_at < 0:
        raise UsageError(
            f"URL template needs {picc_param}=<32 zeros> and {mac_param}=<16 zeros> as query "
            "parameters; build one with bolt_card_template(base_url)"
        )
    if c_at < p_at:
        raise UsageError("the MAC parameter must come after the PICC data parameter")
    file_data = ndef_file(uri_record(template))
    # The abbreviated prefix is never inside a query string, so every template byte at index
    # b >= len(prefix) lands at file offset base + b.
    base = len(file_data) - len(template.encode("utf-8"))
    picc = base + p_at + len(picc_param) + 1
    mac = base + c_at + len(mac_param) + 1
    assert file_data[picc : picc + 32] == PICC_PLACEHOLDER.encode()
    assert file_data[mac : mac + 16] == MAC_PLACEHOLDER.encode()
    return BoltCardLayout(template, file_data, picc, mac)


def _param_index(url: str, marker: str) -> int:
    """Byte index of ``marker`` as a whole query parameter (after ``?`` or ``&``), or -1."""
    raw = url.encode("utf-8")
    needle = marker.encode("utf-8")
    for sep in (b"?", b"&"):
        at = raw.find(sep + needle)
        while at >= 0:
            end = at + 1 + len(needle)
            if end == len(raw) or raw[end : end + 1] in (b"&", b"#"):
                return at + 1
            at = raw.find(sep + needle, at + 1)
    return -1
