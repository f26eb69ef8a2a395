"""``tracker`` command line: database migrations, users, stations, and the web server.

    tracker db upgrade|downgrade|current
    tracker db backup FILE [--force]
    tracker users add NAME --role viewer|admin [--password-stdin]
    tracker users list | disable NAME | remove NAME | passwd NAME [--password-stdin]
    tracker users role NAME viewer|admin
    tracker stations add NAME | list | revoke NAME | rotate NAME
    tracker issuers add NAME --kind btcpay --url URL --store-id ID --api-key KEY \
        --webhook-secret SECRET [--json]
    tracker issuers list | remove NAME
    tracker reconcile [--once]
    tracker tokens add USER [--json] | revoke ID|TOKEN-PREFIX
    tracker serve [--host 127.0.0.1] [--port 8080]

Settings come from ``TRACKER_*`` variables and/or ``--config FILE`` (TOML). Secrets printed
here (a generated password, a station token) go to stdout once and never to the log.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Sequence

from tracker import cli_payouts as payout_commands
from tracker.cli_common import _audit, _engine, _json_flag, _refused, _session, _settings
from tracker.models import Role
from tracker.settings import SettingsError, TrackerSettings

log = logging.getLogger("tracker.cli")


def cmd_db(args: argparse.Namespace) -> int:
    from tracker import migrations

    settings = _settings(args)
    engine = _engine(settings, create=True)
    try:
        if args.action == "upgrade":
            migrations.upgrade(engine, args.revision or "head")
        elif args.action == "downgrade":
            migrations.downgrade(engine, args.revision or "-1")
        current = migrations.current_revision(engine)
        head = migrations.head_revision()
        if args.json:
            print(json.dumps({"current": current, "head": head, "up_to_date": current == head}))
        else:
            state = "up to date" if current == head else "behind; run `tracker db upgrade`"
            print(f"database revision: {current or '(empty)'} (head {head}, {state})")
    finally:
        engine.dispose()
    return 0


def cmd_db_backup(args: argparse.Namespace) -> int:
    """SQLite: an online copy to FILE (0600). PostgreSQL: print the pg_dump to run, exit 0."""
    from pathlib import Path

    from tracker.backup import BackupRefused, backup_sqlite, pg_dump_command

    settings = _settings(args)
    target = Path(args.file)
    if not settings.is_sqlite:
        command = pg_dump_command(settings.database_url, target)
        if args.json:
            print(json.dumps({"backend": "postgresql", "run": command}))
        else:
            print("the tracker's database is PostgreSQL; back it up with pg_dump:")
            print(f"  {command}")
            print("(the password comes from PGPASSWORD or ~/.pgpass; restore with pg_restore)")
        return 0
    try:
        size = backup_sqlite(settings, target, force=args.force)
    except BackupRefused as exc:
        return _refused(exc)
    if args.json:
        print(json.dumps({"backend": "sqlite", "file": str(target), "bytes": size}))
    else:
        print(f"backed up {settings.sqlite_path()} to {target} ({size} bytes)")
        print("restore: stop the tracker, copy the backup over the database file, start it")
    return 0


def cmd_users_add(args: argparse.Namespace) -> int:
    from tracker.security import generate_password
    from tracker.services import users

    settings = _settings(args)
    generated = False
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if len(password) < 8:
            print("error: the password must be at least 8 characters", file=sys.stderr)
            return 2
    else:
        password = generate_password()
        generated = True
    try:
        with _session(settings) as session:
            user = users.create_user(
                session, username=args.name, password=password, role=Role(args.role)
            )
            _audit(session, "user.add", "user", user.username, f"role {user.role.value}")
    except users.UserExists as exc:
        return _refused(exc)
    if args.json:
        out = {"username": user.username, "role": user.role.value}
        if generated:
            out["password"] = password
        print(json.dumps(out))
    else:
        print(f"created {user.role.value} {user.username!r}")
        if generated:
            print(f"password: {password}")
            print("(shown once; store it now)")
    return 0


def _read_password(args: argparse.Namespace) -> tuple[str | None, bool]:
    """(password, generated) from stdin or generated; (None, _) when too short."""
    from tracker.security import generate_password

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        return (password if len(password) >= 8 else None), False
    return generate_password(), True


def cmd_users_list(args: argparse.Namespace) -> int:
    from tracker.services import users

    with _session(_settings(args)) as session:
        rows = users.list_users(session)
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in rows]))
    else:
        for r in rows:
            state = "disabled" if r.disabled else "active"
            print(f"{r.username}\t{r.role.value}\t{state}\tcreated {r.created.isoformat()}")
    return 0


def cmd_users_change(args: argparse.Namespace) -> int:
    """disable / remove / passwd: each ends the user's sessions in every tracker process."""
    from tracker.services import users

    settings = _settings(args)
    password, generated = None, False
    if args.users_command == "passwd":
        password, generated = _read_password(args)
        if password is None:
            print("error: the password must be at least 8 characters", file=sys.stderr)
            return 2
    try:
        with _session(settings) as session:
            if args.users_command == "disable":
                users.set_disabled(session, username=args.name)
            elif args.users_command == "remove":
                users.remove_user(session, username=args.name)
            else:
                assert password is not None
                users.set_password(session, username=args.name, password=password)
            _audit(session, f"user.{args.users_command}", "user", args.name.strip())
    except users.UserNotFound as exc:
        return _refused(exc)
    done = {"disable": "disabled", "remove": "removed", "passwd": "changed the password of"}
    if args.json:
        out = {"username": args.name, "action": args.users_command}
        if generated:
            out["password"] = str(password)
        print(json.dumps(out))
    else:
        print(f"{done[args.users_command]} {args.name!r}; its sessions are ended")
        if generated:
            print(f"password: {password}")
            print("(shown once; store it now)")
    return 0


def cmd_users_role(args: argparse.Namespace) -> int:
    """Give a user another role; ends its sessions (the new role holds at the next sign-in)."""
    from tracker.services import users

    try:
        with _session(_settings(args)) as session:
            user = users.set_role(session, username=args.name, role=Role(args.role))
            _audit(session, "user.role", "user", user.username, f"role {user.role.value}")
    except users.UserNotFound as exc:
        return _refused(exc)
    if args.json:
        print(json.dumps({"username": user.username, "role": user.role.value}))
    else:
        print(f"{user.username!r} is now {user.role.value}; its sessions are ended")
    return 0


def cmd_stations_revoke(args: argparse.Namespace) -> int:
    from tracker.services import stations

    try:
        with _session(_settings(args)) as session:
            stations.revoke_token(session, name=args.name)
            _audit(session, "station.revoke", "station", args.name)
    except stations.StationNotFound as exc:
        return _refused(exc)
    if args.json:
        print(json.dumps({"name": args.name, "revoked": True}))
    else:
        print(f"revoked the token of station {args.name!r} (refused everywhere within seconds)")
    return 0


def cmd_stations_rotate(args: argparse.Namespace) -> int:
    from tracker.services import stations

    try:
        with _session(_settings(args)) as session:
            token = stations.rotate_token(session, name=args.name)
            _audit(session, "station.rotate", "station", args.name)
    except stations.StationNotFound as exc:
        return _refused(exc)
    if args.json:
        print(json.dumps({"name": args.name, "token": token}))
    else:
        print(f"new token for station {args.name!r}: {token}")
        print("(shown once; the old token is refused within seconds)")
    return 0


def cmd_stations_add(args: argparse.Namespace) -> int:
    from tracker.services import stations

    settings = _settings(args)
    try:
        with _session(settings) as session:
            station, token = stations.create_station(session, name=args.name)
            _audit(session, "station.add", "station", station.name)
    except stations.StationExists as exc:
        return _refused(exc)
    if args.json:
        print(json.dumps({"name": station.name, "token": token}))
    else:
        print(f"created station {station.name!r}")
        print(f"token: {token}")
        print("(shown once; configure the station with it now — only its hash is stored)")
    return 0


def cmd_stations_list(args: argparse.Namespace) -> int:
    from tracker.services import station_health

    settings = _settings(args)
    with _session(settings) as session:
        rows = station_health.overview(session, count_taps=False)
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in rows]))
    else:
        for r in rows:
            seen = r.last_seen.isoformat() if r.last_seen else "never"
            hb = r.heartbeat
            health = (f"outbox {hb.outbox_pending}\tdead {hb.outbox_dead}\tversion {hb.version}"
                      if hb else "no heartbeat")
            print(f"{r.name}\t{r.state_words}\tlast seen {seen}\t{health}\t"
                  f"{'token' if r.has_token else 'local'}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from tracker.db import SchemaNotCurrentError, check_database_exists
    from tracker.web.app import create_app

    settings = _settings(args)
    if args.forwarded_allow_ips is not None:
        settings = dataclasses.replace(settings, forwarded_allow_ips=args.forwarded_allow_ips)
    host = args.host or settings.host
    port = args.port or settings.port
    try:
        check_database_exists(settings)
        app = create_app(settings)
    except SchemaNotCurrentError as exc:
        return _refused(exc)
    common = {
        "host": host,
        "port": port,
        "log_level": settings.log_level,
        "access_log": args.access_log,
        **proxy_options(settings),
    }
    if args.workers > 1:
        app.state.engine.dispose()
        return _serve_workers(settings, host, port, args.workers, common)
    uvicorn.run(app, **common)  # type: ignore[arg-type]
    return 0


def proxy_options(settings: TrackerSettings) -> dict[str, object]:
    """uvicorn's forwarded-header options: believe ``X-Forwarded-*`` only from the proxies
    ``settings.forwarded_allow_ips`` names. Both options are always set explicitly: left
    unset, uvicorn trusts 127.0.0.1 (or $FORWARDED_ALLOW_IPS), i.e. every same-host client
    and SSH tunnel could choose the address the login limit counts."""
    trusted = settings.forwarded_allow_ips.strip()
    return {"proxy_headers": bool(trusted), "forwarded_allow_ips": trusted}


def _serve_workers(
    settings: TrackerSettings, host: str, port: int, workers: int, common: dict[str, object]
) -> int:
    """Several worker processes accepting on one listening socket.

    Not ``uvicorn.run(workers=N)``: uvicorn creates that socket without ``IPPROTO_TCP``, so
    asyncio skips TCP_NODELAY on accepted connections and every answer written in two parts
    (headers, body) waits ~40 ms for a delayed ACK (measured: 48 ms per request instead of 2).
    """
    import multiprocessing
    import signal
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    _export_settings(settings)  # each worker builds its own settings, engine and app
    ctx = multiprocessing.get_context("spawn")
    config = {k: v for k, v in common.items() if k not in ("host", "port")}
    procs = [
        ctx.Process(target=_worker_main, args=(sock, config), name=f"tracker-worker-{n}")
        for n in range(workers)
    ]
    for proc in procs:
        proc.start()
    log.info("serving on http://%s:%d with %d workers", host, port, workers)

    def stop(_signum: int, _frame: object) -> None:
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    for proc in procs:
        proc.join()
        code = code or (proc.exitcode or 0)
    sock.close()
    return 0 if code in (0, -signal.SIGTERM) else 1


def _worker_main(sock: object, config: dict[str, object]) -> None:
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config("tracker.web.app:create_app_from_env", factory=True, **config)  # type: ignore[arg-type]
    )
    server.run(sockets=[sock])  # type: ignore[list-item]


def _export_settings(settings: TrackerSettings) -> None:
    """Put the resolved settings into TRACKER_* so worker processes see the same values."""
    import dataclasses

    for f in dataclasses.fields(settings):
        os.environ[f"TRACKER_{f.name.upper()}"] = str(getattr(settings, f.name))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tracker", description="Bolt Card tracker")
    parser.add_argument("--config", help="TOML settings file (default: $TRACKER_CONFIG)")
    parser.add_argument("--database-url", help="overrides TRACKER_DATABASE_URL")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="database migrations and backups").add_subparsers(
        dest="action", required=True
    )
    for action, text in (
        ("upgrade", "migrate to a revision (default: head)"),
        ("downgrade", "migrate down (default: one step)"),
        ("current", "show the schema revision"),
    ):
        migrate = db.add_parser(action, help=text)
        if action != "current":
            migrate.add_argument("revision", nargs="?", help="target revision")
        migrate.set_defaults(func=cmd_db, revision=None)
    backup = db.add_parser("backup", help="SQLite: copy the live database to FILE (0600)")
    backup.add_argument("file", metavar="FILE")
    backup.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    backup.set_defaults(func=cmd_db_backup)

    users = sub.add_parser("users", help="operator accounts").add_subparsers(
        dest="users_command", required=True
    )
    add_user = users.add_parser("add", help="create an operator")
    add_user.add_argument("name")
    add_user.add_argument("--role", choices=[r.value for r in Role], default=Role.viewer.value)
    add_user.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from stdin (default: generate and print one)",
    )
    add_user.set_defaults(func=cmd_users_add)
    users.add_parser("list", help="list operators").set_defaults(func=cmd_users_list)
    for action, text in (
        ("disable", "stop a user from signing in; ends its sessions"),
        ("remove", "delete a user; ends its sessions"),
        ("passwd", "set a new password (generated unless --password-stdin); ends its sessions"),
    ):
        change = users.add_parser(action, help=text)
        change.add_argument("name")
        if action == "passwd":
            change.add_argument("--password-stdin", action="store_true")
        change.set_defaults(func=cmd_users_change)
    role = users.add_parser("role", help="give a user another role; ends its sessions")
    role.add_argument("name")
    role.add_argument("role", choices=[r.value for r in Role])
    role.set_defaults(func=cmd_users_role)

    stations = sub.add_parser("stations", help="stations and their tokens").add_subparsers(
        dest="stations_command", required=True
    )
    add_station = stations.add_parser("add", help="create a station; prints its token once")
    add_station.add_argument("name")
    _json_flag(add_station)
    add_station.set_defaults(func=cmd_stations_add)
    list_station = stations.add_parser("list", help="list stations")
    list_station.set_defaults(func=cmd_stations_list)
    revoke = stations.add_parser("revoke", help="take a station's token away")
    revoke.add_argument("name")
    revoke.set_defaults(func=cmd_stations_revoke)
    rotate = stations.add_parser("rotate", help="give a station a new token; prints it once")
    rotate.add_argument("name")
    rotate.set_defaults(func=cmd_stations_rotate)

    payout_commands.register(sub)

    serve = sub.add_parser("serve", help="run the web server")
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8080)")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.add_argument(
        "--workers", type=int, default=1, help="worker processes (PostgreSQL or SQLite WAL)"
    )
    serve.add_argument(
        "--forwarded-allow-ips",
        metavar="IPS",
        help="comma-separated proxy addresses whose X-Forwarded-For is believed "
        "(default: none; setting forwarded_allow_ips / TRACKER_FORWARDED_ALLOW_IPS)",
    )
    serve.set_defaults(func=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # httpx logs every Greenfield request at INFO: one line per webhook delivery and per poll
    # page, ~7 % of the event loop's time under webhook load; failures are logged by us.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        return int(args.func(args))
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the migration check and DB errors say what to do
        from tracker.db import SchemaNotCurrentError
        from tracker.issuers.secrets import SecretUnreadable

        if isinstance(exc, SchemaNotCurrentError | SecretUnreadable):
            return _refused(exc)
        raise


if __name__ == "__main__":
    raise SystemExit(main())
