"""``python -m bench [NAME ...] [--quick] [--json] [--list]``: run benchmarks, print a table.

Options this runner does not know are left in ``sys.argv`` for the modules to read.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

from bench import available, format_table, load


def main(argv: list[str]) -> int:
    names = [a for a in argv if not a.startswith("-")]
    if "--list" in argv:
        print("\n".join(available()))
        return 0
    if "--quick" in argv:
        os.environ["BENCH_QUICK"] = "1"
    as_json = "--json" in argv
    known = available()
    unknown = [n for n in names if n not in known]
    if unknown:
        print(
            f"python -m bench: no benchmark {', '.join(unknown)}; have: {', '.join(known)}",
            file=sys.stderr,
        )
        return 2
    failed = False
    for name in names or known:
        started = time.perf_counter()
        try:
            rows = load(name).run()
        except Exception:  # one broken benchmark must not hide the others
            failed = True
            print(f"[bench] {name} failed:\n{traceback.format_exc()}", file=sys.stderr)
            continue
        for row in rows:
            row.setdefault("bench", name)
        if as_json:
            for row in rows:
                print(json.dumps(row, default=str))
        else:
            print(format_table(rows), end="")
            print(f"[{name}: {time.perf_counter() - started:.1f} s]\n")
        sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
