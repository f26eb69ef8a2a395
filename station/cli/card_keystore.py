"""``station card keystore``: make a master key, list, import and export cards' keys.

Keys leave the store only on request: ``export --out FILE`` (mode 0600) or ``export --show`` on
an interactive terminal; piped output never carries a key.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from station.cli import EXIT_OK


def register(actions: Any) -> None:
    ks = actions.add_parser("keystore", help="the encrypted key store of the card tools")
    sub = ks.add_subparsers(dest="keystore_command", metavar="ACTION")
    sub.required = True
    new = sub.add_parser("new-master-key", help="print a new Fernet master key (a secret)")
    new.set_defaults(func=run_keystore)
    for name, what in (("list", "list the cards in the store"),
                       ("import", "import a new_bolt_card_response / BTCPay keys / wipe JSON"),
                       ("export", "export a card as new_bolt_card_response or wipe JSON")):
        p = sub.add_parser(name, help=what)
        p.add_argument("--keystore", type=Path, required=True, metavar="FILE")
        p.add_argument("--keystore-key-file", type=Path, metavar="FILE")
        if name != "list":
            p.add_argument("--uid", required=True, metavar="HEX", help="the card's 7-byte UID")
        if name == "import":
            p.add_argument("file", type=Path, help="the JSON file to import")
        if name == "export":
            p.add_argument("--format", choices=("response", "wipe"), default="response")
            p.add_argument("--out", type=Path, metavar="FILE", help="write to FILE (0600)")
            p.add_argument("--show", action="store_true",
                           help="print the keys (interactive terminal only)")
        p.set_defaults(func=run_keystore)


def run_keystore(args: argparse.Namespace) -> int:
    from station.cli.card import _run_tool

    def body() -> int:
        from station import cardtools as ct
        from station.cardtools.keysource import read_json
        from station.cardtools.keystore import KeyStoreFile, master_key, new_master_key
        from station.emulator.state import save_state

        if args.keystore_command == "new-master-key":
            if not sys.stdout.isatty():
                print("new-master-key prints a secret: run it on a terminal", file=sys.stderr)
                return 2
            print(new_master_key())
            return EXIT_OK
        store = KeyStoreFile(args.keystore, master_key(args.keystore_key_file))
        if args.keystore_command == "list":
            for uid in store.uids():
                print(uid)
            return EXIT_OK
        uid = ct.parse_hex(args.uid, "--uid", 7)
        if args.keystore_command == "import":
            imported = store.import_json(uid, read_json(args.file, "import"))
            print(f"card {uid.hex().upper()} stored (key version {imported.version})")
            return EXIT_OK
        data = store.export(uid, args.format)
        if args.out is not None:
            save_state(args.out, data)
            print(f"card {uid.hex().upper()} exported to {args.out} (mode 0600)")
        elif args.show and sys.stdout.isatty():
            print(json.dumps(data, indent=2))
        else:
            raise ct.BadInput("keys are printed only with --show on an interactive terminal; "
                              "use --out FILE")
        return EXIT_OK

    return _run_tool("station card keystore", body)
