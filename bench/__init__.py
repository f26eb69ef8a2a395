"""Benchmarks: ``python -m bench`` runs every module here and prints one table.

A benchmark is a module ``bench/<name>.py`` with ``run() -> list[dict]``; nothing to register,
the runner finds it. Each row is a dict with:

* ``bench`` (the module name) and ``case`` (what was measured);
* ``value`` and ``unit`` — or ``p50_ms`` and ``p95_ms`` for latencies;
* optionally ``ok`` (``True``/``False``: the target was met or missed) and ``detail`` (the
  target, sizes, anything a reader needs to judge the figure).

``python -m bench sun`` runs one module, ``python -m bench --list`` names them, ``--json`` prints
the rows as JSON lines instead of a table. ``BENCH_QUICK=1`` (or ``--quick``) asks modules for
a smaller, faster run. Speed lives here, never in tests.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import Any

__all__ = ["available", "format_table", "load"]


def available() -> list[str]:
    """Names of the benchmark modules in this package (files not starting with ``_``)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def load(name: str) -> ModuleType:
    module = importlib.import_module(f"{__name__}.{name}")
    if not callable(getattr(module, "run", None)):
        raise LookupError(f"bench/{name}.py has no run() function")
    return module


def _figure(row: Mapping[str, Any]) -> str:
    if "p50_ms" in row:
        return f"p50 {row['p50_ms']:.2f} ms, p95 {row.get('p95_ms', float('nan')):.2f} ms"
    if "value" in row:
        value = row["value"]
        text = f"{value:,.0f}" if isinstance(value, float) and value >= 1000 else f"{value:,}"
        if isinstance(value, float) and value < 1000:
            text = f"{value:.3g}"
        return f"{text} {row.get('unit', '')}".strip()
    return ""


_KNOWN = {"bench", "case", "value", "unit", "p50_ms", "p95_ms", "ok", "detail"}


def format_table(rows: Iterable[Mapping[str, Any]]) -> str:
    """Rows as an aligned text table: bench | case | result | ok | detail (+ other fields)."""
    lines: list[tuple[str, str, str, str, str]] = []
    for row in rows:
        extra = ", ".join(f"{k}={v}" for k, v in row.items() if k not in _KNOWN)
        detail = "; ".join(x for x in (str(row.get("detail", "") or ""), extra) if x)
        mark = {True: "ok", False: "MISS"}.get(row["ok"], "") if "ok" in row else ""
        lines.append(
            (str(row.get("bench", "")), str(row.get("case", "")), _figure(row), mark, detail)
        )
    header = ("bench", "case", "result", "ok", "detail")
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(4)]
    out = []
    for r in [header, *lines]:
        cells = [r[i].ljust(widths[i]) for i in range(4)]
        out.append("  ".join([*cells, r[4]]).rstrip())
    out.insert(1, "  ".join("-" * w for w in widths) + "  ------")
    return "\n".join(out) + "\n"
