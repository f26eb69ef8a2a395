"""``station card provision`` and ``station card wipe``: the commands that change a card.

Both classify the card first (no authentication), journal every changing step (``--journal``),
and print ``--dry-run`` plans with keys and MACs redacted. Provision takes keys from an issuer
key (deterministic), a keys JSON (BTCPay ``{LNURLW, K0..K4}`` or ``new_bolt_card_response``)
or ``--random-keys`` (saved in the encrypted key store before the card is written); ``--batch``
programs card after card. The logic lives in :mod:`station.cardtools`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from station.cli import EXIT_NEGATIVE, EXIT_OK


def register(actions: Any) -> None:
    from station.cli.card import _common_options, _issuer_options, _version_option

    prov = actions.add_parser(
        "provision",
        help="program a blank card as a Bolt Card, read it back and verify",
        description="Classify the card (no authentication), then program a factory-fresh card "
        "(URL template, SDM settings, keys 1-4 then 0), read it back and verify it. A card that "
        "is not blank is refused (exit 1) without spending an authentication; a card cut off "
        "half-way is finished with --resume.",
    )
    _common_options(prov)
    prov.add_argument("--url-template", metavar="URL",
                      help="lnurlw://host/path (p=<32 zeros>&c=<16 zeros> added when missing); "
                      "default: the LNURLW of --keys-json")
    src = prov.add_mutually_exclusive_group(required=True)
    _issuer_options(src)
    src.add_argument("--keys-json", metavar="FILE",
                     help="BTCPay {LNURLW, K0..K4} or a new_bolt_card_response JSON file")
    src.add_argument("--random-keys", action="store_true",
                     help="fresh random keys, saved in --keystore before the card is written")
    _version_option(prov)
    prov.add_argument("--keys-out", metavar="FILE",
                      help="add the card's keys to this station keys file (mode 0600)")
    prov.add_argument("--print-keys", action="store_true",
                      help="print the new_bolt_card_response JSON, keys included")
    prov.add_argument("--resume", action="store_true",
                      help="finish a provision that was cut off (same keys)")
    prov.add_argument("--force", action="store_true",
                      help="reprogram a card that is ours and configured (needs --reason)")
    prov.add_argument("--reason", default="", metavar="TEXT", help="why --force (journaled)")
    prov.add_argument("--batch", action="store_true",
                      help="card after card (emulated: every *.json in --card-state DIR)")
    prov.add_argument("--count", type=int, default=0, metavar="N",
                      help="--batch on a real reader: stop after N cards (default: Ctrl-C)")
    _write_options(prov)
    prov.set_defaults(func=run_provision)

    wipe = actions.add_parser(
        "wipe",
        help="restore factory keys and settings, from any state our tools leave",
        description="Classify the card (no authentication); prove the keys (SUN when there is "
        "one, else authentication with the key each key version calls for); restore factory "
        "file settings, NDEF contents and keys. Wrong keys leave the card unchanged.",
    )
    _common_options(wipe)
    src = wipe.add_mutually_exclusive_group(required=True)
    src.add_argument("--keys-json", metavar="FILE", help="a new_bolt_card_response JSON file")
    _issuer_options(src)
    src.add_argument("--wipe-json", metavar="FILE", help='a wipe JSON ({"action": "wipe", ...})')
    src.add_argument("--from-keystore", action="store_true",
                     help="the card's keys from --keystore")
    _version_option(wipe)
    _write_options(wipe)
    wipe.set_defaults(func=run_wipe)


def _write_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true",
                        help="classify and print the APDUs it would send (keys, MACs redacted)")
    parser.add_argument("--journal", type=Path, metavar="DIR",
                        help="journal directory (default $STATION_CARD_JOURNAL or "
                        "~/.local/state/boltcard-station/journal)")
    parser.add_argument("--keystore", type=Path, metavar="FILE",
                        help="encrypted key store file (master key: $STATION_KEYSTORE_KEY)")
    parser.add_argument("--keystore-key-file", type=Path, metavar="FILE",
                        help="read the key store's master key from FILE")
    t = parser.add_argument_group("tracker (optional)")
    t.add_argument("--tracker-url", metavar="URL", help="tracker base URL")
    t.add_argument("--station-token", metavar="TOKEN",
                   help="station token (default: $STATION_TRACKER_TOKEN)")
    t.add_argument("--alias", metavar="NAME",
                   help="provision: the card's name in the tracker (kept if it has one)")


def _journal(args: argparse.Namespace) -> Any:
    from station.cardtools.journal import Journal, default_dir

    if args.dry_run:
        return Journal(None)
    return Journal(args.journal if args.journal is not None else default_dir())


def _keystore(args: argparse.Namespace, *, needed: bool) -> Any:
    from station import cardtools as ct
    from station.cardtools.keystore import KeyStoreFile, master_key

    if args.keystore is None:
        if needed:
            raise ct.BadInput("give --keystore FILE (the encrypted key store)")
        return None
    return KeyStoreFile(args.keystore, master_key(args.keystore_key_file))


def _template_and_keys(args: argparse.Namespace) -> tuple[str, Any, int]:
    from station import cardtools as ct
    from station.cardtools.keystore import parse_keys_json
    from station.ntag424 import keys

    if args.issuer_key is not None:
        issuer = ct.parse_hex(args.issuer_key, "--issuer-key", 16)
        version = ct.check_key_version(1 if args.version is None else args.version)

        def derived(uid: bytes) -> keys.KeySet:
            return keys.derive_keys(issuer, uid, version)

        if not args.url_template:
            raise ct.BadInput("give --url-template lnurlw://host/path")
        return ct.url_template(args.url_template), derived, version
    if args.version is not None and not args.random_keys:
        raise ct.BadInput("--version applies to --issuer-key and --random-keys only")
    if args.random_keys:
        if not args.url_template:
            raise ct.BadInput("give --url-template lnurlw://host/path")
        version = ct.check_key_version(1 if args.version is None else args.version)
        ks = keys.KeySet(*(os.urandom(16) for _ in range(5)), version=version)
        return ct.url_template(args.url_template), ks, version
    from station.cardtools.keysource import read_json

    program = parse_keys_json(read_json(Path(args.keys_json), "--keys-json"),
                              f"--keys-json {args.keys_json}")
    version = ct.check_key_version(program.keys.version)
    if args.url_template:
        template = ct.url_template(args.url_template)
        if program.lnurlw and _base(program.lnurlw) != _base(template):
            raise ct.BadInput(
                "--url-template and the LNURLW of --keys-json differ: the issuer made these keys "
                "for its LNURLW; give only one of them"
            )
        return template, program.keys, version
    if not program.lnurlw:
        raise ct.BadInput("--keys-json has no LNURLW: give --url-template")
    return ct.url_template(program.lnurlw), program.keys, version


def _base(url: str) -> str:
    return url.split("?", 1)[0].rstrip("/").lower()


def _tracker_note(args: argparse.Namespace, uid: bytes, action: str) -> None:
    """Tell the tracker (its API, with the station token): a registration after a provision
    that proved itself, "wiped" after a wipe. The card is done either way; a tracker that
    cannot be told is said plainly, never an error of the card command."""
    import os

    if not args.tracker_url:
        print(f"tracker: not told about the {action} (no --tracker-url)", file=sys.stderr)
        return
    token = args.station_token or os.environ.get("STATION_TRACKER_TOKEN")
    if not token:
        print(f"tracker: not told about the {action}: --tracker-url needs --station-token "
              "(or $STATION_TRACKER_TOKEN)", file=sys.stderr)
        return
    import httpx

    from station.uplink.base import UplinkUnavailable
    from station.uplink.http import HttpUplink

    uid_hex = uid.hex().upper()
    uplink = HttpUplink(httpx.Client(base_url=args.tracker_url.rstrip("/"), timeout=5.0,
                                     trust_env=False), token)
    try:
        if action == "wipe":
            status = uplink.mark_wiped(uid_hex)
        else:
            status = uplink.register_card(uid_hex, alias=getattr(args, "alias", None))
        print(f"tracker: card {uid_hex} {'marked' if action == 'wipe' else 'registered'} "
              f"({status})", file=sys.stderr)
    except UplinkUnavailable as exc:
        print(f"tracker: could not record the {action} of card {uid_hex}: {exc}",
              file=sys.stderr)
    finally:
        uplink.close()


def run_provision(args: argparse.Namespace) -> int:
    from station.cli.card import _run_tool

    def body() -> int:
        from station import cardtools as ct

        if args.batch:
            from station.cli.card_batch import run_batch

            return run_batch(args)
        template, card_keys, version = _template_and_keys(args)
        store = _keystore(args, needed=args.random_keys)
        if args.keys_out is not None:
            ct.check_keys_file(Path(args.keys_out))  # refuse before the card is written
        result = provision_one(args, template, card_keys, version, store)
        _report(args, result)
        return EXIT_OK

    return _run_tool("station card provision", body)


def provision_one(args: argparse.Namespace, template: str, card_keys: Any, version: int,
                  store: Any, choice: Any = None) -> Any:
    from station import cardtools as ct
    from station.cli.card import _choice
    from station.ntag424 import keys

    def before_write(uid: bytes, ks: Any) -> None:
        if store is not None:
            store.put(uid, ks, template.split("?", 1)[0])
        if args.keys_out is not None:
            entry = keys.new_bolt_card_response(ks, template.split("?", 1)[0])
            entry.update(uid=uid.hex(), version=ks.version)
            ct.add_to_keys_file(Path(args.keys_out), entry)

    result = ct.provision(
        choice or _choice(args, create=True), template, card_keys, version,
        journal=_journal(args), resume=args.resume, force=args.force, reason=args.reason,
        dry_run=args.dry_run, before_write=before_write,
    )
    if not result.dry_run:
        _tracker_note(args, result.uid, "registration")
    return result


def _report(args: argparse.Namespace, result: Any) -> None:
    from station import cardtools as ct

    if result.dry_run:
        print(f"dry run: card {result.uid.hex().upper()} is {result.state}; nothing was changed")
        return
    if args.print_keys:  # asked for by name: the one place provision prints keys
        print(json.dumps(result.card_response(), indent=2))
        return
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(f"card {result.to_dict()['uid']} provisioned and verified "
              f"(key version {result.key_version}, counter {result.counter}, "
              f"was {result.state})")
        print(ct.redact_url(result.url))


def run_wipe(args: argparse.Namespace) -> int:
    from station.cli.card import _check_version_option, _choice, _run_tool, _version

    def body() -> int:
        from station import cardtools as ct

        choice = _choice(args)
        _check_version_option(args)
        store = _keystore(args, needed=args.from_keystore)
        override = None
        if args.issuer_key is not None:
            issuer = ct.parse_hex(args.issuer_key, "--issuer-key", 16)
            source = ct.KeySource(store=ct.issuer_store(issuer, _version(args)))
        elif args.keys_json is not None:
            source = ct.KeySource(fixed=ct.load_program(Path(args.keys_json)).keys)
        elif args.wipe_json is not None:
            source = ct.KeySource(fixed=ct.load_wipe_keys(Path(args.wipe_json)))
        else:
            source, override = ct.KeySource(), store.keys_for
        result = ct.wipe(choice, source, journal=_journal(args), dry_run=args.dry_run,
                         keys_override=override)
        if result.dry_run:
            print(f"dry run: card {result.uid.hex().upper()} is {result.found}; "
                  "nothing was changed")
        elif args.json:
            print(json.dumps(result.to_dict(), indent=2))
        else:
            last = "unknown" if result.last_counter is None else result.last_counter
            print(f"card {result.to_dict()['uid']} wiped: factory keys and settings restored "
                  f"(was {result.found}, last counter {last})")
        if not result.dry_run:
            _tracker_note(args, result.uid, "wipe")
        return EXIT_OK

    return _run_tool("station card wipe", body)


__all__ = ["EXIT_NEGATIVE", "provision_one", "register", "run_provision", "run_wipe"]
