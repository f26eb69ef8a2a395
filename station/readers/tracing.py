"""A CardLink wrapper that logs every APDU in hex, with secrets redacted, and counts them.

Why a wrapper: like pyscard's observers, tracing then works for every backend for free. Why
redaction by allow-list: an APDU trace is the first thing people paste into an issue, and
ChangeKey, authentication frames and written data can carry keys or key material. So only
commands known to carry nothing secret show their data; every other command shows its header
and the data length. Responses to authentication steps are redacted too (they hold encrypted
RndA/RndB, from which a captured trace plus a weak key would give the session away).

Responses are shown in full otherwise, with one exception: the values a SUN URL mirrors
(``p=``/``c=`` and the general ``e=``/``picc_data=``/``enc=``/``cmac=``) print as ``..``. A
READ BINARY of a Bolt Card's NDEF file holds a fresh p/c pair, and a pair that nobody has
presented yet (``station card check`` reads one) is a spendable tap.
"""

from __future__ import annotations

import logging
import re
import time

from station.readers.base import CardLink

log = logging.getLogger("station.readers.trace")

# (CLA, INS) whose command data is public: SELECT, READ BINARY, NTAG 424 GetVersion and its
# continuation outside authentication, GetFileSettings, ReadData/GetFileCounters headers
# (file number, offset, length — in MAC mode followed by a MAC, which is not secret),
# and the reader pseudo-APDUs (GET UID, LED/buzzer).
PUBLIC_COMMANDS: frozenset[tuple[int, int]] = frozenset(
    {
        (0x00, 0xA4),  # ISOSelectFile
        (0x00, 0xB0),  # ISOReadBinary
        (0x90, 0x60),  # GetVersion
        (0x90, 0xF5),  # GetFileSettings
        (0x90, 0xAD),  # ReadData
        (0x90, 0xF6),  # GetFileCounters
        (0x90, 0x64),  # GetKeyVersion (key number only)
        (0xFF, 0xCA),  # reader: get UID / ATS
        (0xFF, 0x00),  # reader: LED/buzzer, firmware version, PN532 direct transmit
    }
)
AUTH_FIRST = (0x90, 0x71)  # AuthenticateEV2First
AUTH_NON_FIRST = (0x90, 0x77)  # AuthenticateEV2NonFirst
ADDITIONAL_FRAME = (0x90, 0xAF)


def format_command(apdu: bytes, *, in_auth: bool = False) -> str:
    """Hex of a C-APDU with anything that might be secret replaced by its length."""
    if len(apdu) < 4:
        return apdu.hex(" ").upper()
    header = apdu[:4].hex(" ").upper()
    if len(apdu) <= 5:  # case 1 or 2: header and Le only, nothing to hide
        return apdu.hex(" ").upper()
    key = (apdu[0], apdu[1])
    public = key in PUBLIC_COMMANDS or (key == ADDITIONAL_FRAME and not in_auth)
    if public:
        return apdu.hex(" ").upper()
    lc = apdu[4]
    return f"{header} {lc:02X} <{lc} bytes redacted>"


# The hex value after a SUN parameter name, as ASCII inside an NDEF file. A value cut at the
# end of one READ BINARY chunk is masked up to the cut; its rest in the next chunk shows, so no
# trace holds a whole value.
_SUN_VALUE = re.compile(rb"(?:[?&](?:p|e|c|picc_data|enc|cmac)=)([0-9A-Fa-f]+)")


def format_response(response: bytes, *, secret: bool) -> str:
    """Hex of an R-APDU; for authentication steps only the status word is shown, and the
    values of SUN parameters show as ``..`` (see the module docstring)."""
    if secret and len(response) > 2:
        return f"<{len(response) - 2} bytes redacted> {response[-2:].hex(' ').upper()}"
    cells = [f"{b:02X}" for b in response]
    for match in _SUN_VALUE.finditer(response[:-2]):
        cells[match.start(1) : match.end(1)] = [".."] * (match.end(1) - match.start(1))
    return " ".join(cells)


class TracingLink:
    """Wraps a :class:`CardLink`: logs at DEBUG on ``station.readers.trace`` and counts APDUs.

    ``apdus`` and ``seconds`` (time spent inside the wrapped link) feed metrics and the bench.
    """

    def __init__(self, inner: CardLink, *, logger: logging.Logger | None = None) -> None:
        self.inner = inner
        self.log = logger or log
        self.apdus = 0
        self.seconds = 0.0
        self._in_auth = False

    def transceive(self, apdu: bytes) -> bytes:
        key = (apdu[0], apdu[1]) if len(apdu) >= 2 else None
        if key in (AUTH_FIRST, AUTH_NON_FIRST):
            self._in_auth = True
        elif key != ADDITIONAL_FRAME:
            self._in_auth = False
        secret = self._in_auth
        self.apdus += 1
        if self.log.isEnabledFor(logging.DEBUG):
            self.log.debug("> %s", format_command(apdu, in_auth=secret))
        started = time.perf_counter()
        try:
            response = self.inner.transceive(apdu)
        except Exception as exc:
            self.log.debug("! %s: %s", type(exc).__name__, exc)
            raise
        finally:
            self.seconds += time.perf_counter() - started
        if self.log.isEnabledFor(logging.DEBUG):
            self.log.debug("< %s", format_response(response, secret=secret))
        if response[-2:] != b"\x91\xaf":  # the authentication exchange ends with its last frame
            self._in_auth = False
        return response

    def close(self) -> None:
        self.inner.close()
