"""The error tree of the NTAG 424 core.

Two families, as h11 separates local and remote faults:

* :class:`UsageError` — the caller misused the API (wrong key length, a command sent before
  authenticating). Fix the calling code.
* :class:`CardError` — the card answered with a non-success status word. Each status word the
  NT4H2421Gx datasheet (§10, Table "Status and error codes") lists has its own subclass so callers
  can catch exactly what they can handle.

:class:`InvalidTap` is the one opaque error that SUN verification raises to callers that face
the outside; it carries a precise ``reason`` only for operator tools and logs.
"""

from __future__ import annotations

from typing import ClassVar


class Ntag424Error(Exception):
    """Base of every error raised by ``station.ntag424``."""


class UsageError(Ntag424Error, ValueError):
    """The API was called wrongly (bad argument, wrong state). Fix the caller."""


class ProtocolError(Ntag424Error):
    """The card's answer broke the protocol (bad length, bad MAC, RndA mismatch).

    Either the card is not genuine, the keys are wrong, or the link corrupted data; retrying
    with a fresh authentication is the only safe move.
    """


class CardError(Ntag424Error):
    """The card answered with an error status word."""

    sw: int
    advice: ClassVar[str] = "see the NT4H2421Gx datasheet status word table"
    meaning: ClassVar[str] = "error"

    def __init__(self, sw: int, command: str = "") -> None:
        self.sw = sw
        self.command = command
        where = f" to {command}" if command else ""
        super().__init__(f"card answered {sw:04X}{where}: {self.meaning}; {self.advice}")


class AuthenticationError(CardError):
    meaning = "authentication error (91AE)"
    advice = "the key is wrong or the command needs authentication with another key"


class PermissionDenied(CardError):
    meaning = "permission denied (919D)"
    advice = "the file's access rights forbid this; authenticate with the right key"


class LengthError(CardError):
    meaning = "length error (917E)"
    advice = "the command's data length is wrong"


class AuthenticationDelay(CardError):
    meaning = "authentication delay (91AD)"
    advice = "too many failed authentications; wait and retry later"


class ParameterError(CardError):
    meaning = "parameter error (919E)"
    advice = "a parameter of the command is out of range"


class NoSuchKey(CardError):
    meaning = "no such key (9140)"
    advice = "the key number does not exist on this card"


class IntegrityError(CardError):
    meaning = "integrity error (911E)"
    advice = "CRC or MAC does not match; re-authenticate"


class BoundaryError(CardError):
    meaning = "boundary error (91BE)"
    advice = "offset or length goes past the end of the file"


class CommandAborted(CardError):
    meaning = "command aborted (91CA)"
    advice = "a chained command was interrupted; start it again"


class IllegalCommand(CardError):
    meaning = "illegal command (911C)"
    advice = "the card does not support this command"


class FileNotFound(CardError):
    meaning = "file or application not found (6A82 / 91F0)"
    advice = "select the NDEF application first, or the file number is wrong"


class SecurityNotSatisfied(CardError):
    meaning = "security status not satisfied (6982)"
    advice = "the file's read/write access needs authentication"


class WrongLength(CardError):
    meaning = "wrong length (6700)"
    advice = "Lc or Le is wrong"


class WrongParameters(CardError):
    meaning = "wrong P1/P2 (6A86 / 6B00)"
    advice = "the command's parameters are wrong"


class InstructionNotSupported(CardError):
    meaning = "instruction not supported (6D00 / 6E00)"
    advice = "this is not an NTAG 424 DNA, or the reader rewrote the APDU"


class MemoryError_(CardError):
    meaning = "memory error (91EE)"
    advice = "the card failed to write; it may be worn out"


_BY_SW: dict[int, type[CardError]] = {
    0x91AE: AuthenticationError,
    0x919D: PermissionDenied,
    0x917E: LengthError,
    0x91AD: AuthenticationDelay,
    0x919E: ParameterError,
    0x9140: NoSuchKey,
    0x911E: IntegrityError,
    0x91BE: BoundaryError,
    0x91CA: CommandAborted,
    0x911C: IllegalCommand,
    0x91F0: FileNotFound,
    0x91EE: MemoryError_,
    0x6A82: FileNotFound,
    0x6982: SecurityNotSatisfied,
    0x6700: WrongLength,
    0x6A86: WrongParameters,
    0x6B00: WrongParameters,
    0x6D00: InstructionNotSupported,
    0x6E00: InstructionNotSupported,
}


def card_error(sw: int, command: str = "") -> CardError:
    """Build the most specific :class:`CardError` for a status word."""
    cls = _BY_SW.get(sw, CardError)
    return cls(sw, command)


class InvalidTap(Ntag424Error):
    """A SUN URL did not verify. ``str()`` is deliberately vague; ``reason`` is precise.

    Show ``str(err)`` to the outside (an LNURL client, an HTTP answer); log ``err.reason``
    for the operator.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__("invalid tap")


class MalformedInput(UsageError):
    """Input that cannot even be parsed (bad hex, missing parameter, wrong length)."""
