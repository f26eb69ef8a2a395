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
import os
import pkgutil
import resource
import statistics
from collections.abc import Iterable, Mapping, Sequence
from types import ModuleType
from typing import Any

__all__ = ["available", "format_table", "latency_row", "load", "peak_kib", "quick", "rss_kib"]


def available() -> list[str]:
    """Names of the benchmark modules in this package (files not starting with ``_``)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def load(name: str) -> ModuleType:
    module = importlib.import_module(f"{__name__}.{name}")
    if not callable(getattr(module, "run", None)):
        raise LookupError(f"bench/{name}.py has no run() function")
    return module


# -- helpers the benchmark modules share ------------------------------------------------------


def quick() -> bool:
    """``BENCH_QUICK=1``: the caller asked for a smaller, faster run."""
    return os.environ.get("BENCH_QUICK") == "1"


def latency_row(case: str, samples: Sequence[float], detail: str, **extra: Any) -> dict[str, Any]:
    """A latency row from samples in seconds: median, p95 and p99 in milliseconds."""
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    return {
        "case": case,
        "p50_ms": statistics.median(ordered) * 1000,
        "p95_ms": pct(0.95),
        "p99_ms": round(pct(0.99), 3),
        "n": len(ordered),
        "detail": detail,
        **extra,
    }


def peak_kib() -> int:
    """Peak resident set size of this process (KiB on Linux)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def rss_kib() -> int:
    """Current resident set size (Linux ``VmRSS``); falls back to the peak elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return peak_kib()


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
