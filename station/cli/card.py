"""``station card emulate``: a software Bolt Card that keeps its counter between runs.

Creates a factory-fresh emulated NTAG 424 DNA if ``--state`` does not exist yet, provisions it
into the Bolt Card layout with the reader-side flows (the same code a merchant's station uses
on a real card), then taps it ``--taps`` times and prints each SUN URL. The state file holds
the card's keys and counters; it is written atomically after every change, mode 0600.

Keys: ``--issuer-key`` derives Bolt Card deterministic keys for the card's UID (verify taps
with ``station sun verify --issuer-key``); ``--keys-out FILE`` draws random keys and writes
them as a ``new_bolt_card_response`` JSON (verify with ``station sun verify --keys FILE``).
Keys are never printed.

Exit codes: 0 success, 1 the card refused (not blank, read-back mismatch), 2 bad input
(options, unreadable state file), 4 the provisioning flows are not installed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from station.cli import EXIT_BAD_INPUT, EXIT_ENVIRONMENT, EXIT_NEGATIVE, EXIT_OK
from station.ntag424.card import EmulatedCard
from station.ntag424.card_state import StateError, load_state, save_state
from station.ntag424.errors import Ntag424Error

_PROG = "station card emulate"
DEFAULT_BASE_URL = "lnurlw://127.0.0.1:8000/boltcard"


class _BadInput(Exception):
    """One line for stderr, exit 2."""


class _Environment(Exception):
    """One line for stderr, exit 4."""


def register(subparsers: Any) -> None:
    card = subparsers.add_parser("card", help="card tools (emulated NTAG 424 DNA)")
    actions = card.add_subparsers(dest="card_command", metavar="ACTION")
    actions.required = True
    emulate = actions.add_parser(
        "emulate",
        help="create/provision a software Bolt Card and tap it",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    emulate.add_argument("--state", required=True, metavar="FILE", help="card state JSON file")
    emulate.add_argument("--uid", metavar="HEX", help="7-byte UID for a new card (default: random)")
    keys = emulate.add_mutually_exclusive_group()
    keys.add_argument("--issuer-key", metavar="HEX", help="derive Bolt Card keys from this key")
    keys.add_argument("--keys-out", metavar="FILE", help="random keys, saved to FILE as JSON")
    emulate.add_argument(
        "--url-template",
        default=DEFAULT_BASE_URL,
        metavar="URL",
        help="lnurlw:// URL, with or without p=<32 zeros>&c=<16 zeros> (default: %(default)s)",
    )
    emulate.add_argument("--taps", type=int, default=1, metavar="N", help="taps (default 1)")
    emulate.add_argument("--json", action="store_true", help="one JSON object per line")
    emulate.set_defaults(func=run_emulate)


def _hex(value: str, option: str, size: int) -> bytes:
    try:
        data = bytes.fromhex(value.strip())
    except ValueError:
        raise _BadInput(f"{option} must be {2 * size} hex digits") from None
    if len(data) != size:
        raise _BadInput(f"{option} must be {2 * size} hex digits")
    return data


def _load_or_create(path: Path, uid_arg: str | None) -> tuple[EmulatedCard, bool]:
    uid = _hex(uid_arg, "--uid", 7) if uid_arg is not None else None
    if path.exists():
        try:
            card = EmulatedCard.from_state(load_state(path))
        except (StateError, OSError) as exc:
            raise _BadInput(f"{path}: {exc}") from None
        if uid is not None and uid != card.uid:
            raise _BadInput(f"{path} holds card {card.uid.hex().upper()}, not --uid {uid_arg}")
        return card, False
    card = EmulatedCard.factory(uid=uid or b"\x04" + os.urandom(6))
    save_state(path, card.to_state())
    return card, True


def _is_blank(card: EmulatedCard) -> bool:
    state = card.to_state()
    return state["key_versions"][0] == 0 and not int(state["files"]["2"]["settings"][:2], 16) & 0x40


def _provision(card: EmulatedCard, args: argparse.Namespace) -> str:
    try:
        from station.ntag424 import flows, keys, ndef
    except ImportError as exc:
        msg = f"cannot provision: the reader-side flows are missing ({exc.name})"
        raise _Environment(msg) from None
    template = args.url_template
    if not template.startswith("lnurlw://"):
        raise _BadInput("--url-template must start with lnurlw://")
    if "p=" not in template:
        template = ndef.bolt_card_template(template)
    if args.issuer_key is not None:
        key_set = keys.derive_keys(_hex(args.issuer_key, "--issuer-key", 16), card.uid)
    elif args.keys_out is not None:
        k0, k1, k2, k3, k4 = (os.urandom(16) for _ in range(5))
        key_set = keys.KeySet(k0, k1, k2, k3, k4)
    else:
        raise _BadInput("the card is blank: give --issuer-key HEX or --keys-out FILE to provision")
    if not 1 <= key_set.version <= 0xFF:
        raise _BadInput("the key version must fit the card's one-byte key version (1..255)")
    try:
        report = flows.drive(
            flows.provision_bolt_card(template, key_set, os.urandom, key_version=key_set.version),
            card.transceive,
        )
    except Ntag424Error as exc:
        raise _Refused(f"provisioning failed: {exc}") from None
    if args.keys_out is not None:
        entry = keys.new_bolt_card_response(key_set, template.split("?")[0])
        entry.update(uid=card.uid.hex(), version=key_set.version)
        _add_to_keys_file(Path(args.keys_out), entry)
    return str(report.url)


def _add_to_keys_file(path: Path, entry: dict[str, Any]) -> None:
    """Add (or replace, by UID) one card in a station keys file ``{"cards": [...]}``.

    Each entry is a ``new_bolt_card_response`` plus ``uid`` and ``version``, which is what
    ``station sun verify --keys FILE`` reads. Written atomically, mode 0600: it holds keys.
    """
    cards: list[Any] = []
    if path.exists():
        try:
            existing = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise _BadInput(f"--keys-out {path}: cannot read the existing file ({exc})") from None
        if not isinstance(existing, dict) or not isinstance(existing.get("cards"), list):
            raise _BadInput(f'--keys-out {path}: not a keys file with a "cards" list')
        cards = [c for c in existing["cards"] if str(c.get("uid", "")).lower() != entry["uid"]]
    save_state(path, {"cards": [*cards, entry]})


class _Refused(Exception):
    """The card said no: one line for stderr, exit 1."""


def _tap(card: EmulatedCard) -> str:
    try:
        from station.ntag424 import flows
    except ImportError as exc:
        raise _Environment(f"cannot tap: the reader-side flows are missing ({exc.name})") from None
    card.power_cycle()  # a tap is a fresh field
    try:
        return str(flows.drive(flows.read_sun_url(), card.transceive))
    except Ntag424Error as exc:
        raise _Refused(f"tap failed: {exc}") from None


def run_emulate(args: argparse.Namespace) -> int:
    path = Path(args.state)
    try:
        if args.taps < 0:
            raise _BadInput("--taps must be 0 or more")
        card, created = _load_or_create(path, args.uid)
        provisioned = False
        if _is_blank(card):
            _provision(card, args)
            provisioned = True
            save_state(path, card.to_state())
        elif args.issuer_key or args.keys_out:
            print(f"{_PROG}: card already provisioned; key options ignored", file=sys.stderr)
        _emit(args, {"event": "card", "uid": card.uid.hex().upper(), "created": created,
                     "provisioned": provisioned, "state": str(path)})
        for n in range(1, args.taps + 1):
            url = _tap(card)
            save_state(path, card.to_state())  # the counter survives a crash after this line
            _emit(args, {"event": "tap", "tap": n, "url": url,
                         "counter": card.sdm_read_counter()}, text=url)
    except _BadInput as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except _Refused as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return EXIT_NEGATIVE
    except _Environment as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    return EXIT_OK


def _emit(args: argparse.Namespace, obj: dict[str, Any], text: str | None = None) -> None:
    if args.json:
        print(json.dumps(obj), flush=True)
    elif text is not None:
        print(text, flush=True)
    elif obj.get("event") == "card":
        what = "created and provisioned" if obj["provisioned"] else "loaded"
        print(f"card {obj['uid']} {what} ({obj['state']})", file=sys.stderr)
