"""Option parsing shared by the ``station`` subcommands: hex keys, UIDs and key versions.

One place decides what a valid ``--k1``/``--issuer-key``/``--uid``/``--version`` looks like, so
``station sun verify``, ``station keys derive`` and ``station read`` accept the same text and
refuse it with the same message. Messages never repeat the value: it is usually a secret.

Kept free of heavy imports: every subcommand module imports this at start-up.
"""

from __future__ import annotations

DEFAULT_KEY_VERSION = 1
"""Bolt Card deterministic key version when none is given (``station.ntag424.keys``)."""

_MAX_VERSION = 0xFFFFFFFF


class BadInput(Exception):
    """A bad option or input: one line for stderr, exit 2."""


def hex_arg(value: str, option: str, size: int) -> bytes:
    """``value`` as exactly ``size`` bytes written as ``2 * size`` hex digits (no spaces)."""
    text = value.strip()
    try:
        data = bytes.fromhex(text)
    except ValueError:
        raise BadInput(f"{option} must be {2 * size} hex digits") from None
    # fromhex skips inner whitespace: count the digits, not only the bytes.
    if len(text) != 2 * size or len(data) != size:
        raise BadInput(f"{option} must be {2 * size} hex digits")
    return data


def key_arg(value: str, option: str) -> bytes:
    """A 16-byte AES key option (``--k1``, ``--k2``, ``--issuer-key``)."""
    return hex_arg(value, option, 16)


def version_arg(value: str | None) -> int | None:
    """``--version`` as a uint32 key version, or ``None`` when not given."""
    if value is None:
        return None
    if not value.isdigit() or int(value) > _MAX_VERSION:
        raise BadInput("--version must be an integer 0..4294967295")
    return int(value)
