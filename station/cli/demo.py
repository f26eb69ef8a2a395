"""``station demo`` (``make demo``): the whole product on one machine, no hardware, real sats
of play money moving.

What runs, each as it would in a shop:

* the tracker, as its own process (``python -m tracker serve``) on SQLite under ``./var/demo/``,
  migrated, with an operator login kept in ``var/demo/login`` and a station token;
* the demo wallet (``station.demo.wallet``, the merchant's and the issuer's wallets, LNbits
  API) and the demo issuer (``station.demo.issuer``, BTCPay's Bolt Card endpoint and payouts
  API) — TEST PEERS, play money, on 127.0.0.1;
* three emulated NTAG 424 DNA cards provisioned with the issuer's LNURLW and keys derived from
  the demo issuer key (state files under ``var/demo/cards/``: counters survive restarts);
* the station daemon with an in-process reader, its POS page on ``127.0.0.1:8090``, and a
  scheduler that taps the cards every ~2 s, arming a charge of a plausible amount before most
  taps; now and then it replays a URL the station already accepted, or presents a forged MAC,
  so the dashboard shows refusals too.

The station reaches the tracker only over its HTTP API, as a remote station does: nothing here
imports the tracker. Ctrl-C stops it; ``--taps N`` stops after N taps. The demo issuer key and
wallet keys are fixed, public toys, and printed nowhere.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from station.cli import EXIT_ENVIRONMENT

# A fixed, public demo issuer key: NEVER use it for real cards.
DEMO_ISSUER_KEY = bytes.fromhex("de30de30de30de30de30de30de30de30")
DEMO_UIDS = ("04D3A0000D3A01", "04D3A0000D3A02", "04D3A0000D3A03")
STATION_NAME = "demo-station"
OPERATOR = "operator"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo", help="run tracker + station + emulated cards + demo issuer and wallet",
        description="Start the tracker, the demo issuer and wallet (test peers), emulated Bolt "
                    "Cards and the station daemon together; charges are armed on a schedule.",
    )
    p.add_argument("--dir", type=Path, default=Path("var/demo"), help="state directory")
    p.add_argument("--port", type=int, default=8080, help="tracker port (0 = any free port)")
    p.add_argument("--issuer-port", type=int, default=8091,
                   help="demo issuer port (the cards' URL names it; 0 = any free port)")
    p.add_argument("--pos-port", type=int, default=8090, help="POS page port (0 = any free)")
    p.add_argument("--taps", type=int, default=None, help="stop after N taps")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between taps")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from station.cli.demo_run import DemoError, run_demo

    try:
        return run_demo(args)
    except DemoError as exc:
        print(f"station demo: {exc}", file=sys.stderr)
        return EXIT_ENVIRONMENT
