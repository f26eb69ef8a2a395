"""Status words the emulated card answers with, and the exception its handlers raise.

Kept apart from ``errors.py`` on purpose: those are the *reader's* exceptions (a card said no);
these are the *card's* reasons for saying no. A handler deep inside the emulator raises
:class:`Reject` with the status word the NT4H2421Gx datasheet names for that case (§10.3
Tables 23/24 and each command's return-code table); the dispatcher turns it into the two
trailing bytes of the R-APDU.
"""

from __future__ import annotations

from typing import Final

# Native commands (CLA 90), datasheet §10.3 Table 23.
OPERATION_OK: Final = 0x9100
ILLEGAL_COMMAND_CODE: Final = 0x911C
INTEGRITY_ERROR: Final = 0x911E
NO_SUCH_KEY: Final = 0x9140
LENGTH_ERROR: Final = 0x917E
PERMISSION_DENIED: Final = 0x919D
PARAMETER_ERROR: Final = 0x919E
AUTHENTICATION_DELAY: Final = 0x91AD
AUTHENTICATION_ERROR: Final = 0x91AE
ADDITIONAL_FRAME: Final = 0x91AF
BOUNDARY_ERROR: Final = 0x91BE
COMMAND_ABORTED: Final = 0x91CA
FILE_NOT_FOUND: Final = 0x91F0

# ISO/IEC 7816-4 commands (CLA 00), datasheet §10.3 Table 24.
ISO_OK: Final = 0x9000
ISO_WRONG_LENGTH: Final = 0x6700
ISO_SECURITY_NOT_SATISFIED: Final = 0x6982
ISO_CONDITIONS_NOT_SATISFIED: Final = 0x6985
ISO_FILE_NOT_FOUND: Final = 0x6A82
ISO_WRONG_P1P2: Final = 0x6A86
ISO_LC_INCONSISTENT: Final = 0x6A87
ISO_INS_NOT_SUPPORTED: Final = 0x6D00
ISO_CLA_NOT_SUPPORTED: Final = 0x6E00

# What an ACR122U answers to a pseudo-APDU it does not know (ACR122U API, "FF" class).
READER_FUNCTION_NOT_SUPPORTED: Final = 0x6A81


class Reject(Exception):
    """A command handler refuses the command with status word ``sw``."""

    def __init__(self, sw: int) -> None:
        super().__init__(f"{sw:04X}")
        self.sw = sw


def sw_bytes(sw: int) -> bytes:
    return sw.to_bytes(2, "big")
