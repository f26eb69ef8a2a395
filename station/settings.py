"""Station settings: built once per process from a TOML file and ``STATION_*`` variables.

Why one object: every part of the daemon (readers, key store, recorder, outbox, logging) gets its
configuration handed down from here, so a test can build a :class:`StationSettings` by hand and
nothing reads the environment behind its back.

Precedence: defaults < TOML file < environment. Secrets (the issuer key, the station token) are
wrapped in :class:`Secret`, whose ``repr``/``str`` never show the value, so a settings object
can be logged or printed safely.

TOML layout (every key optional)::

    station_name = "till-1"
    allowed_hosts = ["pay.example.com"]      # empty = any issuer host
    outbox = "var/station-outbox.sqlite"
    log_format = "text"                       # or "json"
    debounce = 0.3                            # seconds the field must stay empty between taps
    status_ttl = 5.0                          # seconds a card status from the tracker is trusted
    confirm_timeout = 1.5                     # wait this long for the tracker, then accept offline
    heartbeat = 30                            # seconds between heartbeats to the tracker
                                              # (version, outbox depth, dead records,
                                              # readers, uptime); 0 = off

    [[readers]]
    backend = "pcsc"                          # pcsc | nfcpy | emulated
    name = "ACR122"                           # substring of the reader name ("" = first one)

    [keys]
    file = "cards.json"                       # per-card keys (new_bolt_card_response records)
    issuer_key = "00112233445566778899aabbccddeeff"
    issuer_key_version = 1

    [tracker]
    database_url = "sqlite:///var/tracker.sqlite"   # same machine: write straight into the db
    # or
    url = "http://127.0.0.1:8080"
    token = "..."

    # Charges (LNURL-withdraw). Claims go only to allowed_hosts: an empty list sends none.
    insecure_hosts = ["127.0.0.1"]           # plain http:// allowed (a local test issuer)
    accept_foreign_cards = false              # charge cards we hold no keys for (unverified)
    charges_journal = "var/station-charges.sqlite"

    [invoices]                                # where the merchant's invoice comes from
    source = "lnbits"                         # btcpay | lnbits | lnd | cln | demo
    url = "https://lnbits.example"
    key = "..."                               # BTCPay API key, LNbits invoice key,
                                              # LND macaroon (hex), CLN rune
    store_id = "..."                          # BTCPay only
    expiry = 600                              # seconds an invoice stays payable

    [pos]                                     # the POS endpoint and page of `station run`
    listen = "127.0.0.1:8090"                 # "" = off
    token = "..."                             # optional bearer token
    charge_timeout = 60                       # seconds an armed charge waits for a tap

    [metrics]                                 # GET /metrics (Prometheus) of `station run`
    listen = "127.0.0.1:9108"                 # "" = off (the default)
    token = "..."                             # optional: Authorization: Bearer <token>

The metrics endpoint has a listener of its own, not the POS one: a scrape must work on a
station without charges (no POS endpoint), and the POS listener may face the shop's phones
while metrics stay on loopback or the monitoring network.

Environment: STATION_NAME, STATION_READERS ("pcsc:ACR122,nfcpy:usb"), STATION_KEYS_FILE,
STATION_ISSUER_KEY, STATION_ISSUER_KEY_VERSION, STATION_DATABASE_URL, STATION_TRACKER_URL,
STATION_TRACKER_TOKEN, STATION_ALLOWED_HOSTS (comma separated), STATION_OUTBOX,
STATION_LOG_FORMAT, STATION_DEBOUNCE, STATION_STATUS_TTL, STATION_CONFIRM_TIMEOUT,
STATION_INSECURE_HOSTS, STATION_ACCEPT_FOREIGN_CARDS (1/0), STATION_CHARGES_JOURNAL,
STATION_INVOICE_SOURCE, STATION_INVOICE_URL, STATION_INVOICE_KEY, STATION_INVOICE_STORE_ID,
STATION_INVOICE_EXPIRY, STATION_POS_LISTEN, STATION_POS_TOKEN, STATION_CHARGE_TIMEOUT,
STATION_HEARTBEAT, STATION_METRICS_LISTEN, STATION_METRICS_TOKEN.
"""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BACKENDS = ("pcsc", "nfcpy", "emulated")
LOG_FORMATS = ("text", "json")


class SettingsError(ValueError):
    """The configuration is unusable. The message names the setting to fix (never its secret)."""


class Secret:
    """A string that does not print itself. Call :meth:`reveal` where the value is really needed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class ReaderSpec:
    """Which reader to watch: a backend and a substring of the reader's name."""

    backend: str
    name: str = ""

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise SettingsError(
                f"reader backend {self.backend!r} is unknown; use one of {', '.join(BACKENDS)}"
            )


@dataclass(frozen=True)
class KeySettings:
    """Where the card keys come from: a per-card keys file, an issuer key, or both."""

    keys_file: Path | None = None
    issuer_key: Secret | None = None
    issuer_key_version: int = 1

    @property
    def configured(self) -> bool:
        return self.keys_file is not None or self.issuer_key is not None


@dataclass(frozen=True)
class TrackerLink:
    """How taps reach the tracker: its database (same machine) or its API with a station token."""

    database_url: str | None = None
    url: str | None = None
    token: Secret | None = None

    @property
    def mode(self) -> str:
        """``"direct"``, ``"http"`` or ``"none"`` (taps stay in the outbox)."""
        if self.database_url:
            return "direct"
        if self.url:
            return "http"
        return "none"


@dataclass(frozen=True)
class InvoiceSettings:
    """The merchant's Lightning backend, which makes the invoice a charge claims."""

    source: str | None = None  # btcpay | lnbits | lnd | cln | demo; None = charges off
    url: str = ""
    key: Secret | None = None
    store_id: str | None = None
    expiry: int = 600

    @property
    def configured(self) -> bool:
        return self.source is not None

    def __post_init__(self) -> None:
        if not 60 <= self.expiry <= 86400:
            raise SettingsError("[invoices] expiry must be 60..86400 seconds")


@dataclass(frozen=True)
class PosSettings:
    """The POS endpoint ``station run`` serves (``listen = ""`` turns it off)."""

    listen: str = ""
    token: Secret | None = None
    charge_timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.listen:
            self.address()
        if not 0 < self.charge_timeout <= 3600:
            raise SettingsError("[pos] charge_timeout must be 1..3600 seconds")

    def address(self) -> tuple[str, int]:
        return listen_address("[pos] listen", self.listen, "127.0.0.1:8090")


def listen_address(name: str, listen: str, example: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as a (host, port) pair; port 0 = any free one."""
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise SettingsError(f'{name} must be "HOST:PORT", e.g. "{example}"')
    return host, int(port)


@dataclass(frozen=True)
class MetricsSettings:
    """``GET /metrics`` of ``station run`` on a listener of its own (``listen = ""``: off)."""

    listen: str = ""
    token: Secret | None = None

    def __post_init__(self) -> None:
        if self.listen:
            self.address()

    def address(self) -> tuple[str, int]:
        return listen_address("[metrics] listen", self.listen, "127.0.0.1:9108")


@dataclass(frozen=True)
class StationSettings:
    station_name: str = field(default_factory=socket.gethostname)
    readers: tuple[ReaderSpec, ...] = (ReaderSpec("pcsc"),)
    keys: KeySettings = KeySettings()
    tracker: TrackerLink = TrackerLink()
    allowed_hosts: tuple[str, ...] = ()
    outbox_path: Path = Path("var/station-outbox.sqlite")
    log_format: str = "text"
    debounce: float = 0.3
    status_ttl: float = 5.0
    confirm_timeout: float = 1.5
    insecure_hosts: tuple[str, ...] = ()
    accept_foreign_cards: bool = False
    charges_journal: Path | None = None  # default: next to the outbox
    # An outbox file that is not ours (empty, corrupt, another database) is set aside and a new
    # one begins, instead of refusing to start (station.outbox.opening). A good one is kept.
    fresh_outbox: bool = False
    invoices: InvoiceSettings = InvoiceSettings()
    pos: PosSettings = PosSettings()
    #: Seconds between two heartbeats to the tracker; 0 = none. The tracker calls the
    #: station offline after three periods without one.
    heartbeat: float = 30.0
    metrics: MetricsSettings = MetricsSettings()

    @property
    def charges_journal_path(self) -> Path:
        if self.charges_journal is not None:
            return self.charges_journal
        if str(self.outbox_path) == ":memory:":
            return Path(":memory:")
        return self.outbox_path.with_name("station-charges.sqlite")

    def __post_init__(self) -> None:
        if not self.station_name or len(self.station_name) > 100:
            raise SettingsError("station_name must be 1..100 characters")
        if self.log_format not in LOG_FORMATS:
            raise SettingsError(f"log_format must be one of {', '.join(LOG_FORMATS)}")
        for name in ("debounce", "status_ttl", "confirm_timeout"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name} must not be negative")
        if not self.readers:
            raise SettingsError("configure at least one reader ([[readers]] or STATION_READERS)")
        if self.heartbeat != 0 and not 0.2 <= self.heartbeat <= 3600:
            raise SettingsError("heartbeat must be 0 (off) or 0.2..3600 seconds")
        if self.tracker.url and not self.tracker.token and not self.tracker.database_url:
            raise SettingsError("tracker url is set but no station token (STATION_TRACKER_TOKEN)")

    def host_allowed(self, host: str | None) -> bool:
        """An empty allow-list admits any host; otherwise the host must match exactly."""
        if not self.allowed_hosts:
            return True
        return host is not None and host.lower() in self.allowed_hosts


def _parse_readers(value: Any) -> tuple[ReaderSpec, ...]:
    if isinstance(value, str):
        specs = []
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            backend, _, name = item.partition(":")
            specs.append(ReaderSpec(backend.strip(), name.strip()))
        return tuple(specs)
    if isinstance(value, list):
        out = []
        for item in value:
            if not isinstance(item, dict) or "backend" not in item:
                raise SettingsError("each [[readers]] entry needs a backend")
            out.append(ReaderSpec(str(item["backend"]), str(item.get("name", ""))))
        return tuple(out)
    raise SettingsError("readers must be a list of {backend, name} tables")


def _hosts(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list):
        raise SettingsError("allowed_hosts must be a list of host names")
    return tuple(str(h).strip().lower() for h in value if str(h).strip())


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{name} must be true or false (1/0)")


def _number(name: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{name} must be a number of seconds") from None


def _hex_key(name: str, value: str) -> Secret:
    text = value.strip()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise SettingsError(f"{name} must be 32 hex digits (16 bytes)") from None
    if len(raw) != 16:
        raise SettingsError(f"{name} must be 32 hex digits (16 bytes)")
    return Secret(text.lower())


def load_settings(
    config: Path | str | None = None, env: Mapping[str, str] | None = None
) -> StationSettings:
    """Build the settings from an optional TOML file, then ``STATION_*`` overrides."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    if config is not None:
        path = Path(config)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SettingsError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {path} is not valid TOML: {exc}") from None
    base = Path(config).resolve().parent if config is not None else Path.cwd()

    def rel(p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else base / q

    kw: dict[str, Any] = {}
    keys_t: dict[str, Any] = dict(data.get("keys", {}))
    trk_t: dict[str, Any] = dict(data.get("tracker", {}))
    inv_t: dict[str, Any] = dict(data.get("invoices", {}))
    pos_t: dict[str, Any] = dict(data.get("pos", {}))

    if "station_name" in data:
        kw["station_name"] = str(data["station_name"])
    if "readers" in data:
        kw["readers"] = _parse_readers(data["readers"])
    if "allowed_hosts" in data:
        kw["allowed_hosts"] = _hosts(data["allowed_hosts"])
    if "outbox" in data:
        kw["outbox_path"] = rel(str(data["outbox"]))
    if "log_format" in data:
        kw["log_format"] = str(data["log_format"])
    for name in ("debounce", "status_ttl", "confirm_timeout"):
        if name in data:
            kw[name] = _number(name, data[name])
    if "insecure_hosts" in data:
        kw["insecure_hosts"] = _hosts(data["insecure_hosts"])
    if "accept_foreign_cards" in data:
        kw["accept_foreign_cards"] = _flag("accept_foreign_cards", data["accept_foreign_cards"])
    if "charges_journal" in data:
        kw["charges_journal"] = rel(str(data["charges_journal"]))
    if "fresh_outbox" in data:
        kw["fresh_outbox"] = _flag("fresh_outbox", data["fresh_outbox"])
    if "heartbeat" in data:
        kw["heartbeat"] = _number("heartbeat", data["heartbeat"])

    # Environment overrides (relative paths there are relative to the working directory).
    if env.get("STATION_NAME"):
        kw["station_name"] = env["STATION_NAME"]
    if env.get("STATION_READERS"):
        kw["readers"] = _parse_readers(env["STATION_READERS"])
    if "STATION_ALLOWED_HOSTS" in env:
        kw["allowed_hosts"] = _hosts(env["STATION_ALLOWED_HOSTS"])
    if env.get("STATION_OUTBOX"):
        kw["outbox_path"] = Path(env["STATION_OUTBOX"]).expanduser().absolute()
    if env.get("STATION_LOG_FORMAT"):
        kw["log_format"] = env["STATION_LOG_FORMAT"]
    if "STATION_INSECURE_HOSTS" in env:
        kw["insecure_hosts"] = _hosts(env["STATION_INSECURE_HOSTS"])
    if env.get("STATION_ACCEPT_FOREIGN_CARDS"):
        kw["accept_foreign_cards"] = _flag("STATION_ACCEPT_FOREIGN_CARDS",
                                           env["STATION_ACCEPT_FOREIGN_CARDS"])
    if env.get("STATION_FRESH_OUTBOX"):
        kw["fresh_outbox"] = _flag("STATION_FRESH_OUTBOX", env["STATION_FRESH_OUTBOX"])
    if env.get("STATION_CHARGES_JOURNAL"):
        kw["charges_journal"] = Path(env["STATION_CHARGES_JOURNAL"]).expanduser().absolute()
    for name, var in (
        ("debounce", "STATION_DEBOUNCE"),
        ("status_ttl", "STATION_STATUS_TTL"),
        ("confirm_timeout", "STATION_CONFIRM_TIMEOUT"),
        ("heartbeat", "STATION_HEARTBEAT"),
    ):
        if env.get(var):
            kw[name] = _number(name, env[var])

    keys_file = rel(str(keys_t["file"])) if keys_t.get("file") else None
    if env.get("STATION_KEYS_FILE"):
        keys_file = Path(env["STATION_KEYS_FILE"]).expanduser().absolute()
    issuer_raw = keys_t.get("issuer_key")
    if env.get("STATION_ISSUER_KEY"):
        issuer_raw = env["STATION_ISSUER_KEY"]
    version_raw = env.get("STATION_ISSUER_KEY_VERSION") or keys_t.get("issuer_key_version", 1)
    try:
        version = int(version_raw)
    except (TypeError, ValueError):
        raise SettingsError("issuer_key_version must be an integer") from None
    kw["keys"] = KeySettings(
        keys_file=keys_file,
        issuer_key=_hex_key("issuer_key", str(issuer_raw)) if issuer_raw else None,
        issuer_key_version=version,
    )

    db_url = env.get("STATION_DATABASE_URL") or trk_t.get("database_url")
    url = env.get("STATION_TRACKER_URL") or trk_t.get("url")
    token = env.get("STATION_TRACKER_TOKEN") or trk_t.get("token")
    kw["tracker"] = TrackerLink(
        database_url=str(db_url) if db_url else None,
        url=str(url).rstrip("/") if url else None,
        token=Secret(str(token)) if token else None,
    )
    kw["invoices"] = _invoices(inv_t, env)
    kw["pos"] = _pos(pos_t, env)
    met_t: dict[str, Any] = dict(data.get("metrics", {}))
    met_token = env.get("STATION_METRICS_TOKEN") or met_t.get("token")
    kw["metrics"] = MetricsSettings(
        listen=str(env.get("STATION_METRICS_LISTEN", met_t.get("listen", ""))).strip(),
        token=Secret(str(met_token)) if met_token else None,
    )
    return StationSettings(**kw)


def _invoices(table: dict[str, Any], env: Mapping[str, str]) -> InvoiceSettings:
    source = env.get("STATION_INVOICE_SOURCE") or table.get("source")
    key = env.get("STATION_INVOICE_KEY") or table.get("key")
    expiry = env.get("STATION_INVOICE_EXPIRY") or table.get("expiry", 600)
    try:
        expiry_s = int(expiry)
    except (TypeError, ValueError):
        raise SettingsError("[invoices] expiry must be whole seconds") from None
    return InvoiceSettings(
        source=str(source).strip().lower() if source else None,
        url=str(env.get("STATION_INVOICE_URL") or table.get("url") or ""),
        key=Secret(str(key)) if key else None,
        store_id=str(env.get("STATION_INVOICE_STORE_ID") or table.get("store_id") or "") or None,
        expiry=expiry_s,
    )


def _pos(table: dict[str, Any], env: Mapping[str, str]) -> PosSettings:
    listen = env.get("STATION_POS_LISTEN", table.get("listen", ""))
    token = env.get("STATION_POS_TOKEN") or table.get("token")
    timeout = env.get("STATION_CHARGE_TIMEOUT") or table.get("charge_timeout", 60)
    return PosSettings(
        listen=str(listen).strip(),
        token=Secret(str(token)) if token else None,
        charge_timeout=_number("charge_timeout", timeout),
    )
