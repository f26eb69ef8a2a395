"""Test-suite root. ``require`` (skip or fail when pcscd, PostgreSQL or Chromium is missing)
lives in ``components.py`` beside this file so helpers in every test folder can import it."""

from __future__ import annotations

from collections.abc import Iterator

import pcscd_harness
import pytest
from components import require


@pytest.fixture(scope="session")
def pcscd() -> Iterator[pcscd_harness.Pcscd]:
    """The one real pcscd with vpcd for every test folder (started here, or one already serving
    vpcd reused). Missing pcscd, vpcd, pyscard or root: ``require("pcsc", ...)``."""
    reason = pcscd_harness.unavailable_reason()
    require("pcsc", reason is None, reason or "")
    daemon = pcscd_harness.Pcscd()
    try:
        daemon.start()
    except (RuntimeError, TimeoutError, OSError) as exc:
        require("pcsc", False, f"could not start pcscd: {exc}")
    try:
        yield daemon
    finally:
        daemon.close()
