"""Tracker settings: one object per process, built from a TOML file and ``TRACKER_*`` variables.

Why not import-time globals: tests, the CLI and several tracker processes each need their own
configuration (another database, another port) in the same interpreter. ``load_settings()`` is
called once at the edge (the CLI, a test fixture) and the result is passed down explicitly.

Precedence, lowest to highest: defaults, the TOML file (``TRACKER_CONFIG`` or ``config_path``),
``TRACKER_*`` environment variables, keyword overrides.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

DEFAULT_DB_PATH = Path("var") / "tracker.sqlite"
SECRET_KEY_FILENAME = "tracker.secret"


class SettingsError(ValueError):
    """The configuration is unusable; the message names the setting and how to fix it."""


@dataclass(frozen=True)
class TrackerSettings:
    """Everything the tracker process needs to know about its environment.

    ``secret_key`` signs operator session cookies; it is never logged and ``repr``
    hides it.
    """

    database_url: str = f"sqlite:///{DEFAULT_DB_PATH}"
    secret_key: str = field(default="", repr=False)
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "info"
    #: Sessions (operator cookies) stay valid this long.
    session_max_age_s: int = 12 * 3600
    #: Page size of list endpoints when the client does not ask for one.
    page_size: int = 50
    #: Upper bound on ``limit`` a client may request.
    max_page_size: int = 500
    #: Refuse to start when the schema is not at the Alembic head (tests may switch it off).
    check_migrations: bool = True
    #: SQLite ``busy_timeout`` in milliseconds: how long a writer waits for the lock held by
    #: another process before the request is answered 503 with ``Retry-After``.
    sqlite_busy_timeout_ms: int = 2_000
    #: Connection pool size for PostgreSQL.
    pool_size: int = 10
    #: Run the live-update watcher (SSE for operator pages). An ingest-only process behind a
    #: load balancer can switch it off and leave live pages to the other processes.
    live_updates: bool = True
    #: Operators' default time zone (IANA name, e.g. ``Europe/Berlin``) for showing times,
    #: "today" and date filters; each operator may pick another. Empty: the system's zone.
    timezone: str = ""
    #: Fernet key (``Fernet.generate_key()``) that encrypts issuer API keys and webhook
    #: secrets at rest (``TRACKER_ISSUER_KEY``). Empty: derived from ``secret_key``, so
    #: rotating the secret key then makes stored issuer secrets unreadable (re-add them).
    issuer_key: str = field(default="", repr=False)
    #: Seconds between Greenfield reconciliations inside ``tracker serve``; 0 switches the
    #: loop off (``tracker reconcile --once`` still works).
    reconcile_seconds: int = 60
    #: A station's claim that no issuer payout matches this many seconds after the tracker
    #: stored it is settled by reconciliation (``TRACKER_CLAIM_GRACE_SECONDS``): its payout
    #: becomes Failed (the issuer has none) or Unknown (the issuer could not be asked).
    #: BTCPay makes the payout inside the LNURL callback, so an hour is ample for a late
    #: webhook or a missed poll; a payout that still comes later is linked and wins.
    claim_grace_seconds: int = 3600
    #: Largest webhook body accepted (BTCPay's payout events are ~400 bytes).
    webhook_max_bytes: int = 64 * 1024
    #: Webhook deliveries handled inline (fetch + store before the answer) at once per
    #: process; beyond that a verified delivery is stored as pending, answered, and fetched by
    #: the queue worker, which coalesces a burst into one Greenfield list. 0: always queue.
    webhook_inline: int = 2
    #: Timeout of each Greenfield request, seconds.
    issuer_timeout_s: int = 10
    #: Proxies whose ``X-Forwarded-For`` / ``X-Forwarded-Proto`` are believed (comma-separated
    #: addresses or networks, ``*`` for any). Empty (the default): no forwarded header is
    #: believed and the client address is the TCP peer - otherwise anyone able to reach the
    #: port from a trusted address could pick the address the login limit counts.
    forwarded_allow_ips: str = ""
    #: Sign-in attempts allowed per window: per (address, user), per user from any address,
    #: per address over all users. Counted in the database, shared by all tracker processes.
    login_max_failures: int = 5
    login_max_failures_per_user: int = 10
    login_max_failures_per_address: int = 30
    login_window_s: int = 300
    #: Bearer token a Prometheus server sends to ``GET /metrics``
    #: (``Authorization: Bearer <token>``, ``TRACKER_METRICS_TOKEN``). Empty (the default):
    #: only signed-in admins may read ``/metrics``; it is never public.
    metrics_token: str = field(default="", repr=False)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def sqlite_path(self) -> Path | None:
        """File path of a SQLite database URL, or None for PostgreSQL / in-memory."""
        if not self.is_sqlite:
            return None
        _, _, rest = self.database_url.partition(":///")
        if not rest or rest.startswith(":memory:"):
            return None
        return Path(rest.split("?", 1)[0])


_BOOL_TRUE = {"1", "true", "yes", "on"}
_BOOL_FALSE = {"0", "false", "no", "off"}


def _coerce(name: str, kind: type, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _BOOL_TRUE:
            return True
        if text in _BOOL_FALSE:
            return False
        raise SettingsError(f"setting {name!r} must be true or false, got {value!r}")
    if kind is int:
        try:
            return int(value)
        except (TypeError, ValueError):
            raise SettingsError(f"setting {name!r} must be an integer, got {value!r}") from None
    return str(value)


_KINDS: dict[str, type] = {
    "database_url": str,
    "secret_key": str,
    "host": str,
    "port": int,
    "log_level": str,
    "session_max_age_s": int,
    "page_size": int,
    "max_page_size": int,
    "check_migrations": bool,
    "sqlite_busy_timeout_ms": int,
    "pool_size": int,
    "live_updates": bool,
    "issuer_key": str,
    "reconcile_seconds": int,
    "claim_grace_seconds": int,
    "webhook_max_bytes": int,
    "webhook_inline": int,
    "issuer_timeout_s": int,
    "forwarded_allow_ips": str,
    "login_max_failures": int,
    "login_max_failures_per_user": int,
    "login_max_failures_per_address": int,
    "login_window_s": int,
    "metrics_token": str,
}


def normalise_database_url(url: str) -> str:
    """Route ``postgresql://`` / ``postgres://`` URLs to psycopg 3, the driver we ship."""
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def secret_key_file(settings: TrackerSettings) -> Path | None:
    """Where a generated secret key is kept, or None when it is not kept at all.

    SQLite: next to the database file, once that file exists (a command that is refused
    because there is no database leaves nothing behind). PostgreSQL: in the user's state
    directory, one file per database (``$XDG_STATE_HOME`` or ``~/.local/state``, then
    ``boltcard-tracker/``), never the working directory, so every command run by that user
    finds the same key wherever it is started. Several machines sharing one PostgreSQL
    database must share ``TRACKER_SECRET_KEY`` instead.
    """
    db_path = settings.sqlite_path()
    if db_path is not None:
        return db_path.parent / SECRET_KEY_FILENAME if db_path.exists() else None
    if settings.is_sqlite:
        return None  # in-memory
    from sqlalchemy import make_url

    name = make_url(settings.database_url)._replace(password=None).render_as_string()
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "boltcard-tracker" / f"tracker-{digest}.secret"


def _ensure_secret_key(settings: TrackerSettings) -> TrackerSettings:
    """Generate and persist a secret key (see :func:`secret_key_file`) when none is given.

    Persisting matters: a new key at every start would log every operator out on each restart,
    break cookies across several processes sharing one database, and make issuer secrets
    (encrypted with a key derived from it) unreadable.
    """
    if settings.secret_key:
        return settings
    key_file = secret_key_file(settings)
    if key_file is None:
        return replace(settings, secret_key=secrets.token_urlsafe(48))
    directory = key_file.parent
    if key_file.exists():
        key = key_file.read_text(encoding="utf-8").strip()
        if key:
            return replace(settings, secret_key=key)
    directory.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # O_EXCL: when two processes race, the loser reads the winner's key.
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return replace(settings, secret_key=key_file.read_text(encoding="utf-8").strip())
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(key + "\n")
    return replace(settings, secret_key=key)


def load_settings(
    *,
    config_path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    persist_secret: bool = True,
    **overrides: Any,
) -> TrackerSettings:
    """Build the process's settings. Unknown keys are an error (typos should not pass silently)."""
    environ = os.environ if env is None else env
    values: dict[str, Any] = {}

    path = config_path or environ.get("TRACKER_CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise SettingsError(f"config file {path} not found; fix TRACKER_CONFIG") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {path} is not valid TOML: {exc}") from None
        section = data.get("tracker", data)
        for key, value in section.items():
            if key not in _KINDS:
                raise SettingsError(f"unknown setting {key!r} in {path}; known: {sorted(_KINDS)}")
            values[key] = _coerce(key, _KINDS[key], value)

    for key, kind in _KINDS.items():
        env_value = environ.get(f"TRACKER_{key.upper()}")
        if env_value is not None and env_value != "":
            values[key] = _coerce(key, kind, env_value)

    for key, value in overrides.items():
        if key not in _KINDS:
            raise SettingsError(f"unknown setting {key!r}; known: {sorted(_KINDS)}")
        if value is not None:
            values[key] = _coerce(key, _KINDS[key], value)

    if "database_url" in values:
        values["database_url"] = normalise_database_url(values["database_url"])
    settings = TrackerSettings(**values)
    if not 0 < settings.port < 65536:
        raise SettingsError(f"port must be 1..65535, got {settings.port}")
    if settings.claim_grace_seconds < 0:
        raise SettingsError("claim_grace_seconds must be 0 or more (seconds)")
    if persist_secret:
        settings = _ensure_secret_key(settings)
    elif not settings.secret_key:
        settings = replace(settings, secret_key=secrets.token_urlsafe(48))
    return settings


__all__ = [
    "SettingsError",
    "TrackerSettings",
    "fields",
    "load_settings",
    "normalise_database_url",
]
