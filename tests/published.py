"""The published test vectors (tests/vectors/ntag424-public-vectors.json), loaded once.

Each entry names its source (NXP AN12196 table, Bolt Card docs, RFC) and, where NXP's printed
table is wrong, its errata; firmware_notes/test-vectors.md tells their provenance.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS_FILE = Path(__file__).resolve().parent / "vectors" / "ntag424-public-vectors.json"
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_FILE.read_text())
BY_ID: dict[str, dict[str, Any]] = {v["id"]: v for v in VECTORS}
