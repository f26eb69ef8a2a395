"""Which real components a test needs, and what happens when one is missing.

``require(component, available, reason)`` is the one way a test says it needs pcscd, PostgreSQL,
Chromium or the LNbits test peer: on a user's machine without the component the test skips with
the reason; in CI, where ``REQUIRE_PCSC=1`` / ``REQUIRE_POSTGRES=1`` / ``REQUIRE_BROWSER=1`` /
``REQUIRE_LNBITS=1`` are set, it fails.

It lives in a plain module (not conftest.py) so that helpers in any test folder can import it
by one name, however pytest was started.
"""

from __future__ import annotations

import os

import pytest

_ENV_FOR = {
    "pcsc": "REQUIRE_PCSC",
    "postgres": "REQUIRE_POSTGRES",
    "browser": "REQUIRE_BROWSER",
    "lnbits": "REQUIRE_LNBITS",
}


def require(component: str, available: bool, reason: str) -> None:
    """Skip (or, when the REQUIRE_* variable is set, fail) unless ``available``."""
    if available:
        return
    var = _ENV_FOR[component]
    if os.environ.get(var) == "1":
        pytest.fail(f"{component} is required ({var}=1) but unavailable: {reason}", pytrace=False)
    pytest.skip(f"{component} unavailable: {reason}")
