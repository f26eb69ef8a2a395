"""What every ``tracker`` subcommand needs: settings, an engine, a checked session, the
refusal line and the ``--json`` flag."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from tracker.settings import TrackerSettings, load_settings

if TYPE_CHECKING:
    from sqlmodel import Session


def _settings(args: argparse.Namespace) -> TrackerSettings:
    overrides = {}
    if getattr(args, "database_url", None):
        overrides["database_url"] = args.database_url
    return load_settings(config_path=args.config, **overrides)


def _engine(settings: TrackerSettings, *, create: bool = False):  # type: ignore[no-untyped-def]
    """The engine; a SQLite file that does not exist is refused (it is never created as an
    empty one behind the operator's back) unless ``create`` (``tracker db …``)."""
    from tracker.db import check_database_exists, make_engine

    if not create:
        check_database_exists(settings)
    return make_engine(settings)


@contextlib.contextmanager
def _session(settings: TrackerSettings) -> Iterator[Session]:
    """A session on a schema-checked database; the engine is disposed afterwards."""
    from tracker.db import check_schema_current, make_sessionmaker

    engine = _engine(settings)
    try:
        check_schema_current(engine)
        with make_sessionmaker(engine)() as session:
            yield session
    finally:
        engine.dispose()


def _audit(
    session: Session, action: str, target_type: str, target_id: str, detail: str | None = None
) -> None:
    """Record a command's action in the audit log as ``cli:<OS user>`` (after it succeeded;
    never with a secret in ``detail``)."""
    from tracker.services import audit

    audit.record(
        session,
        actor=audit.cli_actor(),
        action=action,
        target_type=target_type,
        target_id=target_id,
        detail=detail,
    )


def _refused(exc: Exception) -> int:
    """Report an expected refusal (the message says what to do); exit status 1."""
    print(f"error: {exc}", file=sys.stderr)
    return 1


def _json_flag(parser: argparse.ArgumentParser) -> None:
    """``--json`` after the subcommand too (SUPPRESS keeps a leading ``--json``)."""
    parser.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
