"""``station charge AMOUNT_SATS``: wait for one tap, claim the amount, print the outcome.

Local: builds the station from its settings (``--config`` / ``STATION_*``: invoice source,
allowed hosts, tracker) with the reader and keys given here, arms one charge, runs the daemon
until that charge has an outcome, lets the forwarder deliver the tap and the claim, and exits.
With ``--station URL`` it arms the charge on a running daemon's POS endpoint instead and
follows it there.

Output (one JSON object with ``--json``): state, amount_msat, payment_hash, uid, counter,
verified, issuer_host, reason, ms. Exit codes: 0 paid or claimed, 1 refused, 2 bad input,
3 no card within the timeout, 4 environment (reader, invoice source, POS endpoint unusable),
5 pending or unknown (the payment may still come: follow up on the invoice).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from station.cli import EXIT_BAD_INPUT, EXIT_ENVIRONMENT, EXIT_NEGATIVE, EXIT_NO_CARD, EXIT_OK
from station.cli.emulated import add_emulated_options
from station.cli.options import BadInput

EXIT_FOLLOW_UP = 5

OUTPUT_FIELDS = ("state", "amount_msat", "payment_hash", "uid", "counter", "verified",
                 "issuer_host", "reason", "ms")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "charge", help="wait for one tap and claim AMOUNT_SATS from the card (LNURL-withdraw)",
        description="Arm a charge, wait for one Bolt Card tap, claim the amount, print the "
                    "outcome.",
    )
    p.add_argument("amount_sats", type=int, metavar="AMOUNT_SATS")
    p.add_argument("--memo", default="", help="invoice description (≤ 200 characters)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a tap")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--config", type=Path, help="TOML settings file (STATION_* env overrides)")
    p.add_argument("--station", metavar="URL",
                   help="arm the charge on a running daemon's POS endpoint instead")
    p.add_argument("--pos-token", help="the daemon's [pos] token (or STATION_POS_TOKEN)")
    p.add_argument("--backend", choices=("pcsc", "nfcpy", "emulated"))
    p.add_argument("--reader", default=None, help="substring of the reader name")
    p.add_argument("--k1", help="SDM meta read key (32 hex)")
    p.add_argument("--k2", help="SDM file read key (32 hex)")
    p.add_argument("--issuer-key", help="Bolt Card issuer key (32 hex); keys are derived")
    p.add_argument("--version", type=int, default=1, help="deterministic key version")
    p.add_argument("--keys", type=Path, help="per-card keys file (JSON)")
    add_emulated_options(
        p, help_state="with --backend emulated: an emulated card state file to present")
    p.set_defaults(func=cmd_charge)


def exit_code(outcome: dict[str, Any]) -> int:
    state = outcome.get("state")
    if state in ("paid", "claimed"):
        return EXIT_OK
    if state in ("pending", "unknown"):
        return EXIT_FOLLOW_UP
    if state == "timeout":
        return EXIT_NO_CARD
    if outcome.get("fault") == "environment":
        return EXIT_ENVIRONMENT
    return EXIT_NEGATIVE


def show(outcome: dict[str, Any], as_json: bool) -> None:
    out = {key: outcome.get(key) for key in OUTPUT_FIELDS}
    if as_json:
        print(json.dumps(out))
        return
    sats = (out["amount_msat"] or 0) // 1000
    card = out["uid"] or "-"
    line = f"{out['state']}: {sats} sats, card {card}"
    if out["verified"] is False:
        line += " (not verified by the station)"
    if out["reason"]:
        line += f" — {out['reason']}"
    if out["ms"] is not None:
        line += f" ({out['ms']:.0f} ms)"
    print(line)


def cmd_charge(args: argparse.Namespace) -> int:
    if not 1 <= args.amount_sats <= 2_100_000_000_000_000:
        print("station charge: AMOUNT_SATS must be a positive whole number of sats",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.timeout <= 0 or args.timeout > 3600:
        print("station charge: --timeout must be 0 < S ≤ 3600", file=sys.stderr)
        return EXIT_BAD_INPUT
    from station.claim.charge import ChargeError, check_memo

    try:
        check_memo(args.memo)
    except ChargeError as exc:
        print(f"station charge: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.station:
        from station.cli.charge_remote import charge_remote

        return charge_remote(args)
    from station.cli.charge_local import charge_local

    try:
        return charge_local(args)
    except BadInput as exc:
        print(f"station charge: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
