"""The card tools' failures, typed by what the operator must do; none holds key material."""

from __future__ import annotations

from station.ntag424.errors import Ntag424Error


class CardToolError(Exception):
    """Base of the card tools' failures; ``str()`` is one line for the operator, key-free."""


class BadInput(CardToolError):
    """Options or files are wrong: fix the command line (exit 2)."""


class NoCard(CardToolError):
    """No card came within the timeout, or it left the field mid-exchange (exit 3)."""


class EnvironmentProblem(CardToolError):
    """The reader, pcscd or the tracker cannot be reached (exit 4)."""


class Refused(CardToolError):
    """The card or its keys said no: not blank, keys do not verify, read-back mismatch (exit 1)."""


def card_error(exc: Ntag424Error) -> str:
    reason = getattr(exc, "reason", None)
    text = str(exc) or type(exc).__name__
    return f"{text} ({reason})" if reason and reason != text else text
