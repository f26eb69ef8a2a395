"""Sentences for the codes a station stores, so an operator reads words, not identifiers.

Why here (and not in a template): the API, the live event stream, the page script and the
exports all carry the same tap shape (:class:`tracker.models.TapPublic`); putting the words
on that shape makes every reader show the same sentence, with the code kept beside it for
tooltips, filters and spreadsheets.
"""

from __future__ import annotations

from typing import Final

#: Refusal codes (station/tap/result.py names the same strings) and what they mean to a shop.
_REASONS: Final[dict[str, str]] = {
    "counter_not_increasing": "Replayed: counter {counter} was already used",
    "invalid_tap": "Rejected: the card's signature did not check (forged or wrong keys)",
    "card_blocked": "Refused: an operator blocked this card",
    "unknown_card": "Refused: not one of our cards (no keys for it at the station)",
    "host_not_allowed": "Refused: the card points to a payment server that is not allowed",
    "card_wiped": "Refused: this card was wiped and is no longer a Bolt Card",
}

#: A tap whose UID nobody checked: a MAC that failed, or a foreign card charged without keys.
FORGED: Final = "unverified — forged or wrong keys"
FOREIGN: Final = "foreign card, not verified"


def reason_text(reason: str | None, *, counter: int | None = None) -> str | None:
    """The sentence for ``reason``; a code we do not know (a newer station) is shown as is."""
    if not reason:
        return None
    template = _REASONS.get(reason)
    if template is None:
        return reason
    return template.format(counter="?" if counter is None else counter)


def trust_note(*, reason: str | None, verified: bool) -> str | None:
    """Why this tap's UID cannot be taken as the card's, or None when the station verified it.

    A bad MAC (``invalid_tap``) is filed under the UID the tap claimed; a ``verified=false``
    tap carries the UID the reader saw on a card we hold no keys for. Neither proves which
    card it was.
    """
    if reason == "invalid_tap":
        return FORGED
    if not verified:
        return FOREIGN
    return None


def is_trusted(*, reason: str | None, verified: bool) -> bool:
    return trust_note(reason=reason, verified=verified) is None


def known_reasons() -> dict[str, str]:
    """Every known code with its sentence (counter left as "n"), for filters and docs."""
    return {code: text.format(counter="n") for code, text in _REASONS.items()}
