"""``station readers``: which readers this machine has, and through which backend.

Lists without opening anything (so it is safe while the daemon runs). A backend that cannot be
asked (pcscd stopped, pyscard or nfcpy missing) is reported with the fix, on stderr in text
mode and under ``backends`` with ``--json``. Exit 0 when at least one reader was found, 4 when
none was (an environment problem: nothing to tap on).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from station.cli import EXIT_ENVIRONMENT, EXIT_OK


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "readers",
        help="list NFC readers (PC/SC and nfcpy) and their backend",
        description="List the NFC readers this machine has, per backend, without opening them.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=cmd_readers)


def cmd_readers(args: argparse.Namespace) -> int:
    from station.readers.registry import survey

    found = survey()
    if args.json:
        print(json.dumps(found.as_dict(), indent=2))
    else:
        if found.readers:
            width = max(len(r.name) for r in found.readers)
            print(f"{'BACKEND':<8} {'NAME':<{width}}  DETAIL")
            for r in found.readers:
                print(f"{r.backend:<8} {r.name:<{width}}  {r.detail}".rstrip())
        else:
            print("no readers found")
        for backend, problem in found.problems.items():
            print(f"{backend}: {problem}", file=sys.stderr)
        print(
            "(nfcpy serial and udp readers are not discoverable: open them by path, "
            "e.g. tty:USB0:pn532 or udp:127.0.0.1:54321)",
            file=sys.stderr,
        )
    return EXIT_OK if found.readers else EXIT_ENVIRONMENT
