"""``station card``: the card tools of a Bolt Card station.

* ``check``, ``provision``, ``wipe`` work on a card in a real reader (``--backend pcsc`` or
  ``nfcpy``) or on an emulated card (``--backend emulated --card-state FILE``); their logic lives in
  :mod:`station.cardtools`, this module only parses options and renders results.
* ``emulate`` creates, provisions and taps a software Bolt Card that keeps its counter.

Keys are never printed, except by ``provision --print-keys``. Exit codes (``station.cli``):
0 success / every check passed, 1 a check failed or the card refused, 2 bad input, 3 no card
within ``--timeout``, 4 reader, pcscd or tracker unreachable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from station.cli import EXIT_BAD_INPUT, EXIT_ENVIRONMENT, EXIT_NEGATIVE, EXIT_OK
from station.cli.emulated import add_emulated_options, check_emulated_options
from station.cli.options import BadInput as OptionError

if TYPE_CHECKING:
    from station.emulator.card import EmulatedCard

# The card tools, flows and emulated card are imported inside the handlers: ``station``
# start-up registers every subcommand, and most runs need none of them.

_PROG = "station card emulate"
_EMULATE_DESCRIPTION = """\
Creates a factory-fresh emulated NTAG 424 DNA if ``--state`` does not exist yet, provisions it
into the Bolt Card layout with the reader-side flows (the same code a merchant's station uses
on a real card), then taps it ``--taps`` times and prints each SUN URL. The state file holds
the card's keys and counters; it is written atomically after every change, mode 0600."""
DEFAULT_BASE_URL = "lnurlw://127.0.0.1:8000/boltcard"


def register(subparsers: Any) -> None:
    card = subparsers.add_parser(
        "card", help="card tools: check, provision, wipe, emulate (NTAG 424 DNA)"
    )
    actions = card.add_subparsers(dest="card_command", metavar="ACTION")
    actions.required = True
    _register_tools(actions)
    emulate = actions.add_parser(
        "emulate",
        help="create/provision a software Bolt Card and tap it",
        description=_EMULATE_DESCRIPTION,
    )
    emulate.add_argument("--card-state", dest="card_state", metavar="FILE",
                         help="card state JSON file")
    emulate.add_argument("--state", dest="card_state", help=argparse.SUPPRESS)
    emulate.add_argument("--uid", metavar="HEX", help="7-byte UID for a new card (default: random)")
    emulate.add_argument("--blank", action="store_true",
                         help="only create a factory-fresh card (no provisioning, no taps)")
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


def _load_or_create(path: Path, uid_arg: str | None) -> tuple[EmulatedCard, bool]:
    from station import cardtools as ct
    from station.emulator import store

    uid = ct.parse_hex(uid_arg, "--uid", 7) if uid_arg is not None else None
    try:
        card, created = store.load_or_create(path, uid)
    except (store.StateError, OSError) as exc:
        raise ct.BadInput(f"{path}: {exc}") from None
    if not created and uid is not None and uid != card.uid:
        raise ct.BadInput(f"{path} holds card {card.uid.hex().upper()}, not --uid {uid_arg}")
    return card, created


def _is_blank(card: EmulatedCard) -> bool:
    state = card.to_state()
    return state["key_versions"][0] == 0 and not int(state["files"]["2"]["settings"][:2], 16) & 0x40


def _provision(card: EmulatedCard, args: argparse.Namespace) -> str:
    from station import cardtools as ct
    from station.ntag424 import flows, keys
    from station.ntag424.errors import Ntag424Error

    template = ct.url_template(args.url_template)
    if args.issuer_key is not None:
        key_set = keys.derive_keys(ct.parse_hex(args.issuer_key, "--issuer-key", 16), card.uid)
    elif args.keys_out is not None:
        ct.check_keys_file(Path(args.keys_out))  # refuse before the card is written
        k0, k1, k2, k3, k4 = (os.urandom(16) for _ in range(5))
        key_set = keys.KeySet(k0, k1, k2, k3, k4)
    else:
        raise ct.BadInput(
            "the card is blank: give --issuer-key HEX or --keys-out FILE to provision"
        )
    try:
        report = flows.drive(
            flows.provision_bolt_card(template, key_set, os.urandom, key_version=key_set.version),
            card.transceive,
        )
    except Ntag424Error as exc:
        raise ct.Refused(f"provisioning failed: {exc}") from None
    if args.keys_out is not None:
        entry = keys.new_bolt_card_response(key_set, template.split("?")[0])
        entry.update(uid=card.uid.hex(), version=key_set.version)
        ct.add_to_keys_file(Path(args.keys_out), entry)
    return str(report.url)


def _tap(card: EmulatedCard) -> str:
    from station import cardtools as ct
    from station.ntag424 import flows
    from station.ntag424.errors import Ntag424Error

    card.power_cycle()  # a tap is a fresh field
    try:
        return str(flows.drive(flows.read_sun_url(), card.transceive))
    except Ntag424Error as exc:
        raise ct.Refused(f"tap failed: {exc}") from None


def run_emulate(args: argparse.Namespace) -> int:
    def body() -> int:
        from station import cardtools as ct
        from station.emulator import store

        if args.card_state is None:
            raise ct.BadInput("give --card-state FILE (the emulated card's JSON state)")
        path = Path(args.card_state)
        if args.taps < 0:
            raise ct.BadInput("--taps must be 0 or more")
        if args.blank:
            return _emulate_blank(args, path)
        if args.uid is not None:
            ct.parse_hex(args.uid, "--uid", 7)  # a bad --uid is named before anything else
        if not path.exists() and not (args.issuer_key or args.keys_out):
            # Refuse before anything is written: no half-made state file is left behind.
            raise ct.BadInput(
                f"{path} does not exist: a new card needs --issuer-key HEX or --keys-out FILE "
                "to be provisioned (or --blank for a factory-fresh one)"
            )
        card, created = _load_or_create(path, args.uid)
        provisioned = False
        if _is_blank(card):
            _provision(card, args)
            provisioned = True
            store.save(path, card)
        elif args.issuer_key or args.keys_out:
            print(f"{_PROG}: card already provisioned; key options ignored", file=sys.stderr)
        _emit(args, {"event": "card", "uid": card.uid.hex().upper(), "created": created,
                     "provisioned": provisioned, "state": str(path)})
        for n in range(1, args.taps + 1):
            url = _tap(card)
            store.save(path, card)  # the counter survives a crash after this line
            _emit(args, {"event": "tap", "tap": n, "url": url,
                         "counter": card.sdm_read_counter()}, text=url)
        return EXIT_OK

    return _run_tool(_PROG, body)


def _emulate_blank(args: argparse.Namespace, path: Path) -> int:
    """``--blank``: a factory-fresh card, as NXP ships it; an existing file is never replaced."""
    from station import cardtools as ct

    if path.exists():
        raise ct.BadInput(f"{path} exists; --blank only creates new cards (move it away first)")
    if args.issuer_key or args.keys_out:
        raise ct.BadInput("--blank makes a factory-fresh card: leave out the key options")
    card, _created = _load_or_create(path, args.uid)
    _emit(args, {"event": "card", "uid": card.uid.hex().upper(), "created": True,
                 "provisioned": False, "state": str(path)})
    return EXIT_OK


def _emit(args: argparse.Namespace, obj: dict[str, Any], text: str | None = None) -> None:
    if args.json:
        print(json.dumps(obj), flush=True)
    elif text is not None:
        print(text, flush=True)
    elif obj.get("event") == "card":
        what = "created and provisioned" if obj["provisioned"] else "loaded"
        print(f"card {obj['uid']} {what} ({obj['state']})", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# check | provision | wipe


def _common_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("reader")
    where.add_argument(
        "--backend", choices=("pcsc", "nfcpy", "emulated"), default="pcsc",
        help="reader backend (default: %(default)s)",
    )
    where.add_argument(
        "--reader", default="", metavar="SUBSTRING",
        help="first reader whose name contains this (nfcpy: or a path like usb:072f:2200)",
    )
    where.add_argument(
        "--timeout", type=float, default=10.0, metavar="SECONDS",
        help="how long to wait for a card (default: %(default)g)",
    )
    add_emulated_options(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _issuer_options(group: Any) -> None:
    group.add_argument("--issuer-key", metavar="HEX", help="derive Bolt Card keys from this key")


def _version_option(parser: Any) -> None:
    parser.add_argument("--version", type=int, default=None, metavar="N",
                        help="key version of --issuer-key keys (default 1)")


def _register_tools(actions: Any) -> None:
    check = actions.add_parser(
        "check",
        help="is the card on the reader a genuine, correctly provisioned Bolt Card?",
        description="Inspect the card on the reader without changing it (only its read counter "
        "moves): GetVersion, originality signature, NDEF URL and SDM settings, factory keys, key "
        "versions, SUN with the keys given, counter against the tracker. Exit 0 when every "
        "line passes, 1 when any fails.",
    )
    _common_options(check)
    k = check.add_argument_group("keys (any of)")
    _issuer_options(k)
    _version_option(k)
    k.add_argument("--keys", metavar="FILE", help='station keys file ({"cards": [...]})')
    k.add_argument("--k1", metavar="HEX", help="SDM meta read key (decrypts p)")
    k.add_argument("--k2", metavar="HEX", help="SDM file read key (checks c)")
    check.add_argument("--signature-key", metavar="HEX",
                       help="check the originality signature against this secp224r1 public key "
                       "instead of NXP's (tests with emulated cards)")
    check.add_argument("--allowed-host", action="append", metavar="HOST",
                       help="the URL's host must be one of these (repeatable)")
    check.add_argument("--config", type=Path, metavar="FILE",
                       help="station settings: use its allowed_hosts")
    check.add_argument("--trust-test-signature", action="store_true",
                       help="accept the emulated card's published TEST signing key instead of "
                       "NXP's (rehearsals only: a real card must be NXP-signed)")
    t = check.add_argument_group("tracker (optional)")
    t.add_argument("--tracker-url", metavar="URL", help="tracker base URL")
    t.add_argument("--station-token", metavar="TOKEN",
                   help="station token (default: $STATION_TRACKER_TOKEN)")
    t.add_argument("--database-url", metavar="URL",
                   help="read the tracker's database directly (same machine)")
    check.set_defaults(func=run_check)

    from station.cli import card_keystore, card_write

    card_write.register(actions)
    card_keystore.register(actions)


def _choice(args: argparse.Namespace, *, create: bool = False) -> Any:
    from station.cardtools import ReaderChoice

    check_emulated_options(args)
    return ReaderChoice(
        backend=args.backend,
        reader=args.reader,
        timeout=args.timeout,
        state=args.card_state,
        create_state=create,
        pull_after=args.pull_after,
        pull_during=args.pull_during,
    )


def _version(args: argparse.Namespace) -> int:
    """The key version of ``--issuer-key`` keys (default 1); see :func:`_check_version_option`."""
    from station.cardtools import check_key_version

    return check_key_version(1 if args.version is None else args.version)


def _check_version_option(args: argparse.Namespace) -> None:
    """``--version`` only says which issuer-derived keys to use: refuse it on its own."""
    from station.cardtools import BadInput

    if args.version is not None and args.issuer_key is None:
        raise BadInput("--version applies to --issuer-key keys only")


def _check_sources(args: argparse.Namespace) -> Any:
    from station import cardtools as ct

    if (args.k1 is None) != (args.k2 is None):
        raise ct.BadInput("give --k1 and --k2 together")
    _check_version_option(args)
    issuer = None if args.issuer_key is None else ct.parse_hex(args.issuer_key, "--issuer-key", 16)
    if args.keys is not None:
        version = None if args.version is None else _version(args)
        return ct.KeySource(store=ct.file_store(Path(args.keys), issuer, version))
    if issuer is not None:
        if args.k1 is not None:
            raise ct.BadInput("give either --issuer-key/--keys or --k1/--k2, not both")
        return ct.KeySource(store=ct.issuer_store(issuer, _version(args)))
    if args.k1 is not None:
        k1 = ct.parse_hex(args.k1, "--k1", 16)
        k2 = ct.parse_hex(args.k2, "--k2", 16)
        return ct.KeySource(k1k2=(k1, k2))
    return ct.KeySource()


def _tracker(args: argparse.Namespace) -> Any:
    from station import cardtools as ct

    if args.tracker_url and args.database_url:
        raise ct.BadInput("give --tracker-url or --database-url, not both")
    if args.database_url:
        return ct.database_tracker(args.database_url)
    if args.tracker_url:
        if not args.tracker_url.startswith(("http://", "https://")):
            raise ct.BadInput("--tracker-url must start with http:// or https://")
        token = args.station_token or os.environ.get("STATION_TRACKER_TOKEN")
        if not token:
            raise ct.BadInput(
                "--tracker-url needs --station-token TOKEN (or $STATION_TRACKER_TOKEN)"
            )
        return ct.http_tracker(args.tracker_url.rstrip("/"), token)
    if args.station_token:
        raise ct.BadInput("--station-token needs --tracker-url URL")
    return None


def _run_tool(prog: str, body: Any) -> int:
    """Map the card tools' typed errors to exit codes, one line on stderr, no traceback."""
    from station import cardtools as ct
    from station.cli import EXIT_NO_CARD

    codes: tuple[tuple[type[Exception], int], ...] = (
        (ct.BadInput, EXIT_BAD_INPUT),
        (ct.NoCard, EXIT_NO_CARD),
        (ct.EnvironmentProblem, EXIT_ENVIRONMENT),
        (ct.Refused, EXIT_NEGATIVE),
    )
    try:
        return int(body())
    except OptionError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ct.CardToolError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        for kind, code in codes:
            if isinstance(exc, kind):
                return code
        return EXIT_NEGATIVE


def _allowed_hosts(args: argparse.Namespace) -> list[str]:
    """``--allowed-host`` (repeatable), else the daemon's ``allowed_hosts`` from ``--config``."""
    if args.allowed_host:
        return [h.lower() for h in args.allowed_host]
    if args.config is None:
        return []
    from station.settings import SettingsError, load_settings

    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        raise OptionError(f"--config {args.config}: {exc}") from None
    return [str(h).lower() for h in getattr(settings, "allowed_hosts", ()) or ()]


def run_check(args: argparse.Namespace) -> int:
    def body() -> int:
        from station import cardtools as ct

        choice = _choice(args)
        source = _check_sources(args)
        tracker = _tracker(args)
        sig_key = None
        if args.signature_key is not None and args.trust_test_signature:
            raise ct.BadInput("give --signature-key or --trust-test-signature, not both")
        if args.signature_key is not None:
            sig_key = ct.parse_hex(args.signature_key, "--signature-key", 57)
        if args.trust_test_signature:
            from station.emulator.card import TEST_ORIGINALITY_PUBLIC_KEY

            sig_key = TEST_ORIGINALITY_PUBLIC_KEY
        result = ct.check(choice, source, signature_key=sig_key, tracker=tracker,
                          allowed_hosts=_allowed_hosts(args))
        lines = result.to_dict()["checks"]
        if args.json:
            print(json.dumps([{k: c[k] for k in ("check", "result", "detail", "hint")}
                              for c in lines], indent=2))
        else:
            uid = result.uid.hex().upper() if result.uid else "(UID hidden)"
            print(f"card {uid}")
            width = max(len(c["check"]) for c in lines)
            for c in lines:
                hint = f"  -> {c['hint']}" if c["hint"] else ""
                print(f"{c['result']:<4}  {c['check']:<{width}}  {c['detail']}{hint}".rstrip())
            failed = sum(c["result"] == "fail" for c in lines)
            print("all checks passed" if not failed else f"{failed} check(s) failed")
        if result.environment_problem is not None:
            print(f"station card check: {result.environment_problem}", file=sys.stderr)
            return EXIT_ENVIRONMENT
        return EXIT_OK if result.ok else EXIT_NEGATIVE

    return _run_tool("station card check", body)
