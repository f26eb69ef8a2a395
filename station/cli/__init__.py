"""The ``station`` command line.

Each subcommand lives in its own module with a ``register(subparsers)`` function that adds its
parser and sets ``func`` to a callable taking the parsed namespace and returning an exit code.
Every run imports every subcommand module to build the parser, so those modules import only the
standard library and :mod:`station.cli.options` at module level; the protocol core, readers,
daemon and tracker are imported inside the handler that needs them. ``station sun verify
--batch`` is a start-up-sensitive command (a shell loop can call it per URL), and
``tests/cli/test_options.py`` keeps the parser free of heavy imports.
Exit codes everywhere: 0 success, 1 a negative answer (invalid tap, failed check), 2 bad input,
3 no card within the timeout, 4 an environment problem (reader, pcscd, tracker unreachable).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

EXIT_OK = 0
EXIT_NEGATIVE = 1
EXIT_BAD_INPUT = 2
EXIT_NO_CARD = 3
EXIT_ENVIRONMENT = 4

# Modules under station.cli that contribute subcommands, in help order.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "sun",
    "keys",
    "card",
    "readers",
    "run",
    "charge",
    "demo",
)


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad usage already; make sure the message is one line, no traceback."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="station", description="Bolt Card reader station and card tools")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(f"station.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"station.cli.{name}":
                continue  # subcommand not written yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
