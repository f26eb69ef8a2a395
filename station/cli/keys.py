"""``station keys derive``: Bolt Card deterministic keys for one card, as JSON.

Prints the keys on stdout on purpose (that is the command's job: feed a card programmer);
errors go to stderr as one line that never repeats a key.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from station.cli import EXIT_BAD_INPUT, EXIT_OK
from station.cli.options import DEFAULT_KEY_VERSION, BadInput, hex_arg, key_arg, version_arg

_PROG = "station keys derive"


def register(subparsers: Any) -> None:
    keys = subparsers.add_parser("keys", help="Bolt Card key tools")
    actions = keys.add_subparsers(dest="keys_command", metavar="ACTION")
    actions.required = True
    derive = actions.add_parser(
        "derive",
        help="derive a card's keys from an issuer key (boltcard DETERMINISTIC.md)",
        description=(
            "Derive K0..K4 and the card ID of one card from the issuer key. --format keys "
            "(default) prints {uid, version, id, k0..k4}; --format new-bolt-card-response prints "
            "what a programmer app scans (needs --lnurlw); --format wipe prints the wipe JSON."
        ),
    )
    derive.add_argument("--issuer-key", required=True, metavar="HEX", help="16-byte issuer key")
    derive.add_argument("--uid", required=True, metavar="HEX", help="7-byte card UID")
    derive.add_argument(
        "--version", metavar="N", help=f"key version (default {DEFAULT_KEY_VERSION})"
    )
    derive.add_argument(
        "--format",
        choices=("keys", "new-bolt-card-response", "wipe"),
        default="keys",
        help="output shape (default: keys)",
    )
    derive.add_argument("--lnurlw", metavar="URL", help="LNURLW base for new-bolt-card-response")
    derive.add_argument("--card-name", default="", help="card_name for new-bolt-card-response")
    derive.set_defaults(func=run_derive)


def run_derive(args: argparse.Namespace) -> int:
    # Imported here, not at module level: ``station`` start-up registers every subcommand.
    from station.ntag424.errors import UsageError
    from station.ntag424.keys import card_id, derive_keys, new_bolt_card_response, wipe_json

    try:
        issuer = key_arg(args.issuer_key, "--issuer-key")
        uid = hex_arg(args.uid, "--uid", 7)
        version = version_arg(args.version)
        if version is None:
            version = DEFAULT_KEY_VERSION
        keys = derive_keys(issuer, uid, version)
        if args.format == "new-bolt-card-response":
            if not args.lnurlw:
                raise BadInput("--format new-bolt-card-response needs --lnurlw URL")
            out: dict[str, Any] = new_bolt_card_response(keys, args.lnurlw, args.card_name)
        elif args.format == "wipe":
            out = wipe_json(keys)
        else:
            out = {
                "uid": uid.hex(),
                "version": version,
                "id": card_id(issuer, uid).hex(),
                **keys.as_hex(),
            }
    except (BadInput, UsageError) as exc:
        print(f"{_PROG}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(out))
    return EXIT_OK
