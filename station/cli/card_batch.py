"""``station card provision --batch``: card after card, a progress line each, a summary.

On a real reader the next card is the next one laid on it (``--count N`` stops after N); on the
emulated backend ``--card-state DIR`` names a directory and every ``*.json`` in it is a card.
A card that is refused (not blank, wrong keys) is reported and skipped: the batch goes on.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Any

from station.cli import EXIT_NEGATIVE, EXIT_OK


def _choices(args: argparse.Namespace) -> Any:
    from station import cardtools as ct
    from station.cli.card import _choice

    base = _choice(args, create=False)
    if args.backend == "emulated":
        folder = args.card_state
        if folder is None or not folder.is_dir():
            raise ct.BadInput("--batch on the emulated backend needs --card-state DIR")
        files = sorted(folder.glob("*.json"))
        if not files:
            raise ct.BadInput(f"--card-state {folder}: no *.json card states in it")
        return len(files), (replace(base, state=f) for f in files)
    if args.count < 0:
        raise ct.BadInput("--count must be 0 or more")

    def forever() -> Any:
        n = 0
        while not args.count or n < args.count:
            n += 1
            yield base

    return args.count or None, forever()


def run_batch(args: argparse.Namespace) -> int:
    from station import cardtools as ct
    from station.cli.card_write import _keystore, _template_and_keys, provision_one

    if args.print_keys or args.resume or args.force or args.dry_run:
        raise ct.BadInput("--batch takes no --print-keys, --resume, --force or --dry-run")
    total, choices = _choices(args)
    store = _keystore(args, needed=args.random_keys)
    done: list[str] = []
    refused: list[tuple[str, str]] = []
    n = 0
    try:
        for choice in choices:
            n += 1
            template, card_keys, version = _template_and_keys(args)  # random keys: new per card
            where = f"[{n}/{total or '?'}]"
            try:
                result = provision_one(args, template, card_keys, version, store, choice)
            except (ct.Refused, ct.NoCard) as exc:
                refused.append((str(choice.state or n), str(exc)))
                print(f"{where} refused: {exc}", flush=True)
                continue
            uid = result.uid.hex().upper()
            done.append(uid)
            print(f"{where} {uid} provisioned (was {result.state})", flush=True)
    except KeyboardInterrupt:
        print("batch stopped by the operator", file=sys.stderr)
    print(f"summary: {len(done)} provisioned, {len(refused)} refused, {n} cards seen")
    return EXIT_OK if not refused else EXIT_NEGATIVE
