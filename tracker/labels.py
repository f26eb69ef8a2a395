"""How a card or a long hex id is named in a list: the one rule, in one place.

Why here: a 14-hex UID or a 32-hex id is unreadable in a table and pushes the key columns off a
phone. The pages, the API and the live event stream all carry the same short form (the
``card_label`` field of the public models), so the page script never re-implements it and a
row drawn live reads exactly like a row rendered by the server. The full value always goes
beside it (hover, copy button), never replaced.
"""

from __future__ import annotations

from typing import Final

#: Hex digits kept at each end of a shortened value: ``04A1…E5F6``.
KEEP: Final = 4
ELLIPSIS: Final = "\u2026"


def short_hex(value: str | None) -> str:
    """``04A1B2C3D4E5F6`` → ``04A1…E5F6``; short values (≤ 10 characters) stay whole."""
    text = "" if value is None else str(value)
    if len(text) <= 2 * KEEP + 2:
        return text
    return f"{text[:KEEP]}{ELLIPSIS}{text[-KEEP:]}"


def card_label(uid: str | None, alias: str | None) -> str | None:
    """The alias an operator gave the card, else its short UID; None for no card."""
    if alias:
        return alias
    return short_hex(uid) if uid else None
