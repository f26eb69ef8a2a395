"""``station run`` (the daemon) and ``station read`` (one tap, printed as JSON).

``station read`` answers "what does this card say right now?": it waits for one card, reads the
SUN URL with the same 3-APDU flow the daemon uses, verifies it with the keys given, and prints
``{uid, counter, url, valid, reason, apdus, ms}``. It applies no replay or allow-list policy
(that is the daemon's job, with its memory and the tracker). Exit codes: 0 valid, 1 invalid,
2 bad input, 3 no card within ``--timeout``, 4 reader or environment problem.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from station.cli import EXIT_BAD_INPUT, EXIT_ENVIRONMENT, EXIT_NEGATIVE, EXIT_NO_CARD, EXIT_OK
from station.cli.emulated import add_emulated_options, check_emulated_options
from station.cli.options import BadInput, key_arg


def register(subparsers: Any) -> None:
    run = subparsers.add_parser(
        "run", help="run the station daemon (watch readers, verify, record taps)",
        description="Run the station daemon until SIGTERM/SIGINT.",
    )
    run.add_argument("--config", type=Path, help="TOML settings file (STATION_* env overrides)")
    run.add_argument("--log-format", choices=("text", "json"), help="override log_format")
    run.add_argument(
        "--fresh-outbox", action="store_true",
        help="if the outbox file is not usable (empty, corrupt, another database), set it "
             "aside and start an empty one (a good outbox is kept)",
    )
    run.add_argument("--taps", type=int, default=None, help=argparse.SUPPRESS)
    run.set_defaults(func=cmd_run)

    read = subparsers.add_parser(
        "read", help="wait for one tap, verify it and print JSON",
        description="Wait for one card, read and verify its SUN URL, print JSON.",
    )
    read.add_argument("--backend", choices=("pcsc", "nfcpy", "emulated"), default="pcsc")
    read.add_argument("--reader", default="", help="substring of the reader name")
    read.add_argument("--k1", help="SDM meta read key (32 hex)")
    read.add_argument("--k2", help="SDM file read key (32 hex)")
    read.add_argument("--issuer-key", help="Bolt Card issuer key (32 hex); keys are derived")
    read.add_argument("--version", type=int, default=1, help="deterministic key version")
    read.add_argument("--keys", type=Path, help="per-card keys file (JSON)")
    read.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a card")
    add_emulated_options(
        read, help_state="with --backend emulated: an emulated card state file to present"
    )
    read.set_defaults(func=cmd_read)


# -- station run -----------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from station.app import ListenerUnavailable, build_station, run_station
    from station.daemon import setup_logging
    from station.outbox.opening import OutboxUnusable
    from station.settings import SettingsError, load_settings

    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        print(f"station run: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.fresh_outbox:
        settings = dataclasses.replace(settings, fresh_outbox=True)
    setup_logging(args.log_format or settings.log_format)
    try:
        station = build_station(settings, max_taps=args.taps)
    except OutboxUnusable as exc:  # empty, corrupt, not ours, newer: the file and what to do
        print(f"station run: {exc}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except ValueError as exc:  # no keys configured, bad key file
        print(f"station run: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ImportError as exc:
        print(f"station run: a component is missing: {exc}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    try:
        return run_station(station)
    except ListenerUnavailable as exc:  # [metrics] / [pos] listen: the port is taken
        print(f"station run: {exc}", file=sys.stderr)
        return EXIT_ENVIRONMENT


# -- station read ---------------------------------------------------------------------------------


def _verifier(args: argparse.Namespace) -> Any:
    from station.settings import KeySettings, Secret
    from station.tap.verifier import StaticKeysVerifier, build_verifier

    if args.k1 or args.k2:
        if not (args.k1 and args.k2):
            raise BadInput("--k1 and --k2 go together")
        if args.issuer_key or args.keys:
            raise BadInput("give either --k1/--k2, or --issuer-key and/or --keys")
        return StaticKeysVerifier(key_arg(args.k1, "--k1"), key_arg(args.k2, "--k2"))
    if not (args.issuer_key or args.keys):
        raise BadInput("give the card keys: --k1/--k2, --issuer-key or --keys FILE")
    if args.keys is not None and not args.keys.is_file():
        raise BadInput(f"keys file {args.keys} does not exist")
    issuer = Secret(key_arg(args.issuer_key, "--issuer-key").hex()) if args.issuer_key else None
    try:
        return build_verifier(
            KeySettings(keys_file=args.keys, issuer_key=issuer, issuer_key_version=args.version)
        )
    except (ValueError, OSError) as exc:
        raise BadInput(f"cannot load keys: {exc}") from None


def _open_reader(args: argparse.Namespace) -> tuple[Any, Any]:
    """Open the reader and a ``save`` callback; for the emulated backend, present the card from
    ``--card-state`` (with the rehearsal pulls, :mod:`station.cli.emulated`)."""
    if args.backend == "emulated" and args.card_state is not None:
        from station.cli.emulated import open_emulated_reader

        reader, _card, save = open_emulated_reader(args)
        return reader, save
    if args.backend == "emulated":
        from station.readers.emulated import EmulatedReader

        return EmulatedReader(), None
    from station.readers import registry

    return registry.open_reader(args.backend, args.reader), None


def cmd_read(args: argparse.Namespace) -> int:
    from station.readers.base import CardRemoved, ReaderError
    from station.tap.pipeline import TapPipeline
    from station.tap.result import UnsupportedCard

    try:
        verifier = _verifier(args)
        if args.timeout < 0:
            raise BadInput("--timeout must not be negative")
        check_emulated_options(args)
        if args.card_state is not None and not args.card_state.is_file():
            raise BadInput(f"card state file {args.card_state} does not exist")
        reader, save = _open_reader(args)
    except BadInput as exc:
        print(f"station read: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ReaderError as exc:
        print(f"station read: reader problem: {exc}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except (ImportError, LookupError, OSError, ValueError) as exc:
        print(f"station read: cannot open a {args.backend} reader: {exc}", file=sys.stderr)
        return EXIT_ENVIRONMENT

    pipeline = TapPipeline(verifier=verifier, station_name="read")
    try:
        link = reader.wait_for_card(args.timeout)
        if link is None:
            print(f"station read: no card within {args.timeout:g} s", file=sys.stderr)
            return EXIT_NO_CARD
        start = time.perf_counter()
        try:
            result = pipeline.evaluate(link, start=start)
            out: dict[str, Any] = {
                "uid": result.uid,
                "counter": result.counter,
                "url": result.url,
                "valid": result.uid is not None and result.reason is None,
                "reason": result.detail or result.reason,
                "apdus": result.apdus,
                "ms": round((time.perf_counter() - start) * 1000, 3),
            }
        except UnsupportedCard as exc:
            out = {"uid": None, "counter": None, "url": None, "valid": False,
                   "reason": str(exc), "apdus": exc.apdus,
                   "ms": round((time.perf_counter() - start) * 1000, 3)}
        finally:
            link.close()
    except CardRemoved:
        print("station read: the card left the field during the read; tap again",
              file=sys.stderr)
        return EXIT_NO_CARD
    except ReaderError as exc:
        print(f"station read: reader problem: {exc}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    finally:
        if save is not None:
            save()
        reader.close()
    print(json.dumps(out))
    return EXIT_OK if out["valid"] else EXIT_NEGATIVE
