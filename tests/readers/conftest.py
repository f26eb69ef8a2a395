"""Fixtures for reader tests: the real pcscd + vpcd stack, and a tiny stand-in card.

The ``pcscd`` fixture starts pcscd itself (or reuses one that already serves vpcd), so
``make test`` works on a developer machine as well as in CI. Where pcscd, vpcd, pyscard or
root are missing it calls ``require("pcsc", ...)``: skip locally, fail when REQUIRE_PCSC=1.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from components import require

from . import pcscd_harness
from .pcscd_harness import Pcscd


@pytest.fixture(scope="session")
def pcscd() -> Iterator[Pcscd]:
    reason = pcscd_harness.unavailable_reason()
    require("pcsc", reason is None, reason or "")
    daemon = Pcscd()
    try:
        daemon.start()
    except (RuntimeError, TimeoutError, OSError) as exc:
        require("pcsc", False, f"could not start pcscd: {exc}")
    try:
        yield daemon
    finally:
        daemon.close()
