"""``station charge --station URL``: arm the charge on a running daemon's POS endpoint and
follow its event stream to the outcome."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from typing import Any

from station.cli import EXIT_BAD_INPUT, EXIT_ENVIRONMENT
from station.cli.charge import exit_code, show


def charge_remote(args: argparse.Namespace) -> int:
    import httpx

    token = args.pos_token or os.environ.get("STATION_POS_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body: dict[str, Any] = {"amount_sats": args.amount_sats, "memo": args.memo,
                            "timeout": args.timeout}
    if args.reader:
        body["reader"] = args.reader
    base = args.station.rstrip("/")
    try:
        with httpx.Client(base_url=base, headers=headers, trust_env=False,
                          timeout=httpx.Timeout(10.0, read=args.timeout + 120.0)) as http:
            made = http.post("/charges", json=body)
            if made.status_code in (401, 403):
                print("station charge: the POS endpoint refused the token (--pos-token / "
                      "STATION_POS_TOKEN)", file=sys.stderr)
                return EXIT_ENVIRONMENT
            if made.status_code in (409, 422):
                print(f"station charge: {_detail(made)}", file=sys.stderr)
                return EXIT_BAD_INPUT
            if made.status_code != 201:
                print(f"station charge: the POS endpoint answered HTTP {made.status_code}",
                      file=sys.stderr)
                return EXIT_ENVIRONMENT
            charge_id = made.json()["id"]
            outcome = _follow(http, charge_id)
    except httpx.HTTPError as exc:
        print(f"station charge: cannot reach the station at {base} ({type(exc).__name__})",
              file=sys.stderr)
        return EXIT_ENVIRONMENT
    show(outcome, args.json)
    return exit_code(outcome)


def _follow(http: Any, charge_id: str) -> dict[str, Any]:
    kind = None
    with http.stream("GET", f"/charges/{charge_id}/events") as resp:
        for line in resp.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind:
                data = json.loads(line[6:])
                if kind == "pin_required":
                    _pin(http, charge_id, data)
                elif kind == "outcome":
                    return dict(data)
    return dict(http.get(f"/charges/{charge_id}").json())


def _pin(http: Any, charge_id: str, data: dict[str, Any]) -> None:
    if not sys.stdin.isatty():
        return  # the POS page can still answer it; otherwise the charge is refused
    pin = getpass.getpass(f"Card PIN (try {data.get('attempt')} of {data.get('tries')}): ")
    http.post(f"/charges/{charge_id}/pin", json={"pin": pin.strip()})


def _detail(resp: Any) -> str:
    try:
        detail = resp.json().get("detail")
    except ValueError:
        detail = None
    return detail if isinstance(detail, str) else f"HTTP {resp.status_code}"
