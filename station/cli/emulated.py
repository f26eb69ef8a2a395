"""The emulated card's options, shared by every command that can use ``--backend emulated``.

``station card check|provision|wipe``, ``station read`` and ``station charge`` register the same
options with :func:`add_emulated_options` and build the same reader with
:func:`open_emulated_reader`, so ``--card-state FILE`` (the emulated card's JSON memory) and the
rehearsal options mean the same everywhere:

* ``--pull-after N``: the card answers N APDUs, then leaves the field;
* ``--pull-during N``: the card executes the Nth APDU, its answer is lost, and it is gone.

Both rehearse what a person pulling a real card away does to a procedure: the card keeps what
it wrote (the state file is saved either way), the reader side sees ``CardRemoved``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from station.cli.options import BadInput, hex_arg

if TYPE_CHECKING:
    from station.emulator.card import EmulatedCard
    from station.readers.emulated import EmulatedReader


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError("must be a whole number of APDUs")
    return int(text)


def add_emulated_options(parser: argparse.ArgumentParser, *, help_state: str = "") -> None:
    """``--card-state FILE`` (``--state`` kept as a hidden alias), ``--pull-after N``,
    ``--pull-during N``."""
    group = parser.add_argument_group("emulated card (--backend emulated)")
    group.add_argument(
        "--card-state", dest="card_state", type=Path, metavar="FILE",
        help=help_state or "the emulated card's JSON state file",
    )
    group.add_argument("--state", dest="card_state", type=Path, help=argparse.SUPPRESS)
    group.add_argument(
        "--pull-after", type=_count, metavar="N",
        help="rehearsal: the card answers N APDUs, then leaves the field",
    )
    group.add_argument(
        "--pull-during", type=_count, metavar="N",
        help="rehearsal: the card executes APDU N, its answer is lost, then it is gone",
    )


def check_emulated_options(args: argparse.Namespace) -> None:
    """Refuse emulated-only options on a real reader, and an impossible pull."""
    backend = getattr(args, "backend", "emulated")
    used = [
        name for name, value in (
            ("--card-state", args.card_state),
            ("--pull-after", args.pull_after),
            ("--pull-during", args.pull_during),
        ) if value is not None
    ]
    if backend != "emulated" and used:
        raise BadInput(f"{used[0]} only applies to --backend emulated")
    if args.pull_after is not None and args.pull_during is not None:
        raise BadInput("give --pull-after or --pull-during, not both")
    if args.pull_during == 0:
        raise BadInput("--pull-during counts from 1 (the first APDU)")


def open_emulated_reader(
    args: argparse.Namespace, *, create: bool = False, uid_hex: str | None = None
) -> tuple[EmulatedReader, EmulatedCard, Callable[[], None]]:
    """(reader, card, save) for ``args.card_state``; :class:`BadInput` (exit 2) when the file
    is missing (unless ``create``) or is not a valid card state, which is then left untouched."""
    from station.emulator.store import StateError
    from station.readers.emulated import open_state_card

    check_emulated_options(args)
    path: Path | None = args.card_state
    if path is None:
        raise BadInput("the emulated backend needs --card-state FILE (the card's JSON state)")
    uid = None if uid_hex is None else hex_arg(uid_hex, "--uid", 7)
    try:
        return open_state_card(
            path, create=create, uid=uid, pull_after=args.pull_after,
            pull_during=args.pull_during,
        )
    except FileNotFoundError:
        raise BadInput(f"--card-state {path}: no such card state") from None
    except (StateError, OSError) as exc:
        raise BadInput(f"--card-state {path}: {exc}") from None


def emulated_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The rehearsal options as keyword arguments (for :class:`station.cardtools.ReaderChoice`)."""
    return {"pull_after": args.pull_after, "pull_during": args.pull_during}
