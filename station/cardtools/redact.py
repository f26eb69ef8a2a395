"""A fresh SUN URL is a spendable tap: whoever reads ``p=…&c=…`` can claim it. Shown redacted."""

from __future__ import annotations

import re

_PARAM = re.compile(r"([?&](?:p|c)=)([0-9A-Fa-f]+)")


def redact_url(url: str | None) -> str | None:
    """The URL with the values of ``p`` and ``c`` replaced by their first 4 digits and ``…``."""
    if url is None:
        return None
    return _PARAM.sub(lambda m: f"{m.group(1)}{m.group(2)[:4]}…(redacted)", url)
