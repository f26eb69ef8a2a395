"""Sorted list pages at scale: ``python -m bench tracker_sort [--quick]``.

What a click on a column header costs with 1,000,000 taps and 200,000 payouts (the data set of
``bench tracker``, seeded the same way), on SQLite and PostgreSQL: the first page and page 5
(reached by cursor) of each sortable column, service level (SQL plus the public models, no
HTTP), p50/p95 of 40 runs after 3 warm-ups, with the process CPU per page beside the wall time
(the machine is shared; on PostgreSQL the server's own CPU is not in that figure). The default
order (newest first) is measured alongside: sorting must not slow it down.

Then the two indexes of migration 0010 (``ix_tap_counter``, ``ix_payout_amount``) are dropped
and the counter and amount sorts measured again (5 runs: a page then takes seconds): the
"without" rows show what the migration buys. Target: p95 <= 100 ms for every sorted page, as
for the other list pages.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench import quick
from bench.tracker import QUERY_TARGET_MS, Sizes, Unavailable, database, seed
from tracker.db import make_engine, make_sessionmaker
from tracker.models import PayoutState
from tracker.services import payouts as payout_service
from tracker.services import taps as tap_service
from tracker.services.filters import ListFilter
from tracker.services.sorting import parse_sort

RUNS, WARMUP = 40, 3
#: Without the indexes a page takes seconds on SQLite: fewer runs say enough.
SLOW_RUNS, SLOW_WARMUP = 5, 1


def _log(message: str) -> None:
    print(f"[bench tracker_sort] {message}", file=sys.stderr, flush=True)


def _pages(lister: Callable[..., Any], flt: ListFilter, pages: int) -> Callable[[Any], None]:
    def walk(session: Any) -> None:
        cursor = None
        for _ in range(pages):
            _, cursor = lister(session, flt=flt, cursor=cursor, limit=50)

    return walk


def _cases() -> list[tuple[str, Callable[[Any], None], int]]:
    cases: list[tuple[str, Callable[[Any], None], int]] = []
    for kind, lister, columns in (
        ("taps", tap_service.list_taps, ("time", "counter", "outcome")),
        ("payouts", payout_service.list_payouts, ("time", "id", "amount", "state")),
    ):
        for column in columns:
            for direction in ("desc", "asc"):
                flt = ListFilter(sort=parse_sort(kind, column, direction))
                cases.append((f"{kind} by {column} {direction}, first page",
                               _pages(lister, flt, 1), 1))
            flt = ListFilter(sort=parse_sort(kind, column, None))
            cases.append((f"{kind} by {column}, page 5 by cursor (per page)",
                           _pages(lister, flt, 5), 5))
    completed = ListFilter(state=PayoutState.Completed, sort=parse_sort("payouts", "amount", None))
    cases.append(("completed payouts by amount, first page",
                  _pages(payout_service.list_payouts, completed, 1), 1))
    station = ListFilter(station="station-07", sort=parse_sort("taps", "counter", "asc"))
    cases.append(("one station's taps by counter, first page",
                  _pages(tap_service.list_taps, station, 1), 1))
    return cases


def _measure(
    url: str, backend: str, cases: list[Any], note: str, runs: int = RUNS, warmup: int = WARMUP
) -> list[dict[str, Any]]:
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    rows = []
    for label, fn, per in cases:
        wall, cpu = [], []
        for i in range(runs + warmup):
            with factory() as session:
                t, c = time.perf_counter(), time.process_time()
                fn(session)
                elapsed, spent = (time.perf_counter() - t) / per, (time.process_time() - c) / per
            if i >= warmup:
                wall.append(elapsed)
                cpu.append(spent)
        wall.sort()
        p50, p95 = wall[len(wall) // 2] * 1000, wall[round(0.95 * (len(wall) - 1))] * 1000
        cpu_ms = sorted(cpu)[len(cpu) // 2] * 1000
        rows.append({"case": f"{backend}: {label}{note}", "p50_ms": round(p50, 2),
                     "p95_ms": round(p95, 2), "detail": f"cpu p50 {cpu_ms:.2f} ms (this process)",
                     "ok": p95 <= QUERY_TARGET_MS})
        _log(f"{backend}: {label}{note}: p50 {p50:.1f} ms, p95 {p95:.1f} ms, cpu {cpu_ms:.1f} ms")
    engine.dispose()
    return rows


def run() -> list[dict[str, Any]]:
    sizes = Sizes.quick() if quick() or "--quick" in sys.argv else Sizes.full()
    rows: list[dict[str, Any]] = []
    for backend in ("sqlite", "postgres"):
        workdir = Path(tempfile.mkdtemp(prefix=f"tracker-sort-{backend}-"))
        try:
            with database(backend, workdir) as url:
                seconds = seed(url, sizes, datetime.now(UTC))
                _log(f"{backend}: seeded {sizes.taps} taps, {sizes.payouts} payouts "
                     f"in {seconds:.0f} s")
                cases = _cases()
                rows += _measure(url, backend, cases, "")
                engine = make_engine(url)
                with engine.begin() as conn:
                    conn.execute(sa.text("DROP INDEX ix_tap_counter"))
                    conn.execute(sa.text("DROP INDEX ix_payout_amount"))
                engine.dispose()
                without = [c for c in cases if "counter" in c[0] or "amount" in c[0]]
                rows += _measure(url, backend, without, " (without 0010's index)",
                                 runs=SLOW_RUNS, warmup=SLOW_WARMUP)
        except Unavailable as exc:
            rows.append({"case": f"{backend}: skipped", "detail": str(exc)})
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return rows


if __name__ == "__main__":
    from bench import format_table

    print(format_table(run()), end="")
