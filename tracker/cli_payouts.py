"""``tracker issuers``, ``tracker reconcile`` and ``tracker tokens``: following the issuers'
payouts (BTCPay Greenfield) and operator API tokens for scripts."""

from __future__ import annotations

import argparse
import json
from typing import Any
from urllib.parse import urlsplit

from tracker.cli_common import _audit, _engine, _json_flag, _refused, _session, _settings
from tracker.settings import TrackerSettings


def register(sub: Any) -> None:
    issuers = sub.add_parser("issuers", help="BTCPay stores to follow").add_subparsers(
        dest="issuers_command", required=True
    )
    add_issuer = issuers.add_parser("add", help="store an issuer; prints its webhook path")
    add_issuer.add_argument("name")
    add_issuer.add_argument("--kind", choices=["btcpay"], default="btcpay")
    add_issuer.add_argument("--url", required=True, help="BTCPay base URL")
    add_issuer.add_argument("--store-id", required=True)
    add_issuer.add_argument(
        "--api-key", required=True, help="Greenfield key with btcpay.store.canviewpayouts"
    )
    add_issuer.add_argument("--webhook-secret", required=True)
    _json_flag(add_issuer)
    add_issuer.set_defaults(func=cmd_issuers_add)
    list_issuers = issuers.add_parser("list", help="list issuers (never their secrets)")
    _json_flag(list_issuers)
    list_issuers.set_defaults(func=cmd_issuers_list)
    remove_issuer = issuers.add_parser("remove", help="forget an issuer")
    remove_issuer.add_argument("name")
    remove_issuer.set_defaults(func=cmd_issuers_remove)

    reconcile = sub.add_parser("reconcile", help="poll every issuer's payouts (Greenfield)")
    reconcile.add_argument("--once", action="store_true", help="one pass, then exit")
    reconcile.add_argument(
        "--claim-grace", type=int, metavar="SECONDS", default=None,
        help="settle open claims with no issuer payout after this long (default: the "
        "claim_grace_seconds setting, 3600)",
    )
    _json_flag(reconcile)
    reconcile.set_defaults(func=cmd_reconcile)

    tokens = sub.add_parser("tokens", help="operator API tokens").add_subparsers(
        dest="tokens_command", required=True
    )
    add_token = tokens.add_parser("add", help="a new API token for USER (shown once)")
    add_token.add_argument("user")
    _json_flag(add_token)
    add_token.set_defaults(func=cmd_tokens_add)
    revoke_token = tokens.add_parser("revoke", help="revoke a token by id or token prefix")
    revoke_token.add_argument("which", metavar="ID|TOKEN-PREFIX")
    revoke_token.set_defaults(func=cmd_tokens_revoke)


def _box(settings: TrackerSettings):  # type: ignore[no-untyped-def]
    from tracker.issuers.secrets import SecretBox

    return SecretBox.from_settings(settings)


def cmd_issuers_add(args: argparse.Namespace) -> int:
    from tracker.models import IssuerKind
    from tracker.services import issuers

    settings = _settings(args)
    try:
        with _session(settings) as session:
            issuer = issuers.add_issuer(
                session,
                _box(settings),
                name=args.name,
                kind=IssuerKind(args.kind),
                url=args.url,
                store_id=args.store_id,
                api_key=args.api_key,
                webhook_secret=args.webhook_secret,
            )
            # The host only: a URL may carry credentials.
            host = urlsplit(issuer.url).hostname or "?"
            _audit(session, "issuer.add", "issuer", issuer.name, f"{host}, store "
                   f"{issuer.store_id}")
    except (issuers.IssuerExists, issuers.IssuerInvalid, ValueError) as exc:
        return _refused(exc)
    if args.json:
        print(json.dumps({"name": issuer.name, "kind": issuer.kind.value, "url": issuer.url,
                          "store_id": issuer.store_id, "webhook_path": issuer.webhook_path}))
    else:
        print(f"added issuer {issuer.name!r} ({issuer.url}, store {issuer.store_id})")
        print(f"webhook URL path: {issuer.webhook_path}")
        print("(in BTCPay: Store > Webhooks, URL https://<this tracker>" + issuer.webhook_path
              + ", the same secret, events PayoutCreated, PayoutApproved, PayoutUpdated)")
    return 0


def cmd_issuers_list(args: argparse.Namespace) -> int:
    from tracker.services import issuers

    settings = _settings(args)
    with _session(settings) as session:
        rows = issuers.list_issuers(session)
    if args.json:
        print(json.dumps([{**r.model_dump(mode="json"), "webhook_path": r.webhook_path}
                          for r in rows]))
    else:
        for r in rows:
            print(f"{r.name}\t{r.kind.value}\t{r.url}\tstore {r.store_id}\t{r.webhook_path}")
    return 0


def cmd_issuers_remove(args: argparse.Namespace) -> int:
    from tracker.services import issuers

    settings = _settings(args)
    try:
        with _session(settings) as session:
            issuers.remove_issuer(session, name=args.name)
            _audit(session, "issuer.remove", "issuer", args.name)
    except issuers.IssuerNotFound as exc:
        return _refused(exc)
    print(f"removed issuer {args.name!r} (its payouts stay)")
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    import asyncio

    from tracker.db import Database, check_schema_current
    from tracker.web.background import issuer_http_client, reconcile_once

    settings = _settings(args)
    grace_s = settings.claim_grace_seconds if args.claim_grace is None else args.claim_grace
    if grace_s < 0:
        return _refused(ValueError("--claim-grace must be 0 or more seconds"))
    engine = _engine(settings)
    try:
        check_schema_current(engine)
        database = Database(engine)
        box = _box(settings)

        async def run() -> int:
            async with issuer_http_client(settings.issuer_timeout_s) as http:
                while True:
                    reports = await reconcile_once(
                        database, box, http, grace_s=grace_s
                    )
                    for report in reports:
                        line = json.dumps(report) if args.json else _report_line(report)
                        print(line, flush=True)
                    if args.once:
                        return 1 if any(r.get("error") for r in reports) else 0
                    await asyncio.sleep(max(1, settings.reconcile_seconds or 60))

        return asyncio.run(run())
    finally:
        engine.dispose()


def _report_line(report: dict[str, object]) -> str:
    keys = ("seen", "created", "linked", "updated", "unchanged", "ignored_older",
            "open_claims_unmatched", "claims_failed", "claims_unknown", "claims_no_issuer")
    figures = ", ".join(f"{k} {report[k]}" for k in keys if k in report)
    if report.get("error"):
        return f"{report['issuer']}: error: {report['error']}" + (f"; {figures}" if figures else "")
    return f"{report['issuer']}: {figures}"


def cmd_tokens_add(args: argparse.Namespace) -> int:
    from tracker.services import tokens

    settings = _settings(args)
    try:
        with _session(settings) as session:
            token_id, token, role = tokens.create_token(session, username=args.user)
            _audit(session, "token.add", "token", str(token_id), f"for {args.user} ({role})")
    except tokens.TokenError as exc:
        return _refused(exc)
    if args.json:
        print(json.dumps({"id": token_id, "user": args.user, "role": role, "token": token}))
    else:
        print(f"token #{token_id} for {args.user} ({role}): {token}")
        print("(shown once; only its hash is stored. Send it as 'Authorization: Bearer <token>')")
    return 0


def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    from tracker.services import tokens

    settings = _settings(args)
    try:
        with _session(settings) as session:
            revoked = tokens.revoke_token(session, which=args.which)
            _audit(session, "token.revoke", "token", str(revoked))
    except tokens.TokenError as exc:
        return _refused(exc)
    print(f"revoked token #{revoked}")
    return 0
