"""The logic behind ``station card check | provision | wipe``, testable without argparse.

The card procedures themselves are the generator flows of :mod:`station.ntag424.flows`; this
module adds what a person at a provisioning desk needs around them:

* a card on a reader, whatever the backend (:func:`card_on_reader`), with the emulated card's
  state loaded from and saved back to a JSON file so shell runs chain like a real card;
* keys from wherever the operator keeps them (:class:`KeySource`): an issuer key
  (deterministic keys need the card's UID, which only the card knows), a keys file, a
  ``new_bolt_card_response`` or a wipe JSON, or just K1/K2;
* extra check lines the flow cannot produce alone: key versions against the keys we hold, a
  clear "not NXP-signed" and the card's counter against what the tracker last saw.

Errors are typed by what the operator must do (:class:`BadInput`, :class:`NoCard`,
:class:`EnvironmentProblem`, :class:`Refused`); none of their messages holds key material.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from station.ntag424 import commands as cmd
from station.ntag424 import flows, keys, ndef, sun
from station.ntag424.apdu import Flow
from station.ntag424.errors import AuthenticationError, InvalidTap, Ntag424Error, UsageError
from station.ntag424.signature import NXP_NTAG424_PUBLIC_KEY
from station.readers.base import CardLink, CardRemoved, ReaderError

Rng = Callable[[int], bytes]

DEFAULT_TIMEOUT: Final = 10.0


# -- errors -----------------------------------------------------------------------------------


class CardToolError(Exception):
    """Base of the card tools' failures; ``str()`` is one line for the operator, key-free."""


class BadInput(CardToolError):
    """Options or files are wrong: fix the command line (exit 2)."""


class NoCard(CardToolError):
    """No card came within the timeout, or it left the field mid-exchange (exit 3)."""


class EnvironmentProblem(CardToolError):
    """The reader, pcscd or the tracker cannot be reached (exit 4)."""


class Refused(CardToolError):
    """The card or its keys said no: not blank, keys do not verify, read-back mismatch (exit 1)."""


# -- keys ---------------------------------------------------------------------------------------


class UidKeys(Protocol):
    """Keys by card UID (``KeyStore`` fits): deterministic keys need the UID first."""

    def keys_for(self, uid: bytes) -> keys.KeySet | None: ...


@dataclass(frozen=True)
class KeySource:
    """The keys the operator holds for a card, in one of three shapes.

    ``store`` (issuer key and/or keys file) yields a card's keys once its UID is known;
    ``fixed`` is one card's five keys (``new_bolt_card_response`` or wipe JSON); ``k1k2`` is
    just the SUN keys, enough to verify a tap but not to authenticate key 0.
    """

    store: UidKeys | None = None
    fixed: keys.KeySet | None = None
    k1k2: tuple[bytes, bytes] | None = None

    @property
    def empty(self) -> bool:
        return self.store is None and self.fixed is None and self.k1k2 is None

    def __repr__(self) -> str:
        kinds = [n for n in ("store", "fixed", "k1k2") if getattr(self, n) is not None]
        return f"KeySource({', '.join(kinds) or 'none'})"


def parse_hex(value: str, option: str, size: int) -> bytes:
    """``value`` as exactly ``size`` bytes of hex; the message never echoes the value."""
    try:
        data = bytes.fromhex(value.strip())
    except ValueError:
        raise BadInput(f"{option} must be {2 * size} hex digits") from None
    if len(data) != size:
        raise BadInput(f"{option} must be {2 * size} hex digits")
    return data


def check_key_version(version: int) -> int:
    """The card stores one byte per key version, and 0 marks a factory key."""
    if not 1 <= version <= 0xFF:
        raise BadInput("--version must be 1..255 (the card keeps one byte; 0 marks factory keys)")
    return version


def _read_json(path: Path, option: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{option} {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{option} {path}: cannot read it ({type(exc).__name__})") from None
    except ValueError:
        raise BadInput(f"{option} {path}: not valid JSON") from None


def load_program(path: Path) -> keys.CardProgram:
    """A ``new_bolt_card_response`` file (``--keys-json``)."""
    try:
        return keys.parse_new_bolt_card_response(_read_json(path, "--keys-json"))
    except UsageError as exc:
        raise BadInput(f"--keys-json {path}: {exc}") from None


def load_wipe_keys(path: Path) -> keys.KeySet:
    """A wipe JSON file (``--wipe-json``); a ``new_bolt_card_response`` is accepted too."""
    data = _read_json(path, "--wipe-json")
    try:
        if isinstance(data, dict) and "action" in data:
            return keys.parse_wipe_json(data)
        return keys.parse_new_bolt_card_response(data).keys
    except UsageError as exc:
        raise BadInput(f"--wipe-json {path}: {exc}") from None


def issuer_store(issuer_key: bytes, version: int, keys_file: Path | None = None) -> keys.KeyStore:
    """Deterministic keys (and/or a keys file) as a store keyed by UID."""
    try:
        return keys.KeyStore.from_sources(
            keys_file=keys_file, issuer_key=issuer_key, version=version
        )
    except UsageError as exc:
        raise BadInput(str(exc)) from None


def file_store(keys_file: Path, issuer_key: bytes | None, version: int | None) -> keys.KeyStore:
    """A station keys file (``--keys``), optionally with an issuer key as fallback."""
    try:
        return keys.KeyStore.from_file(keys_file, issuer_key=issuer_key, issuer_version=version)
    except UsageError as exc:
        raise BadInput(str(exc)) from None


def identify_keys(store: UidKeys) -> Flow[tuple[bytes | None, keys.KeySet | None]]:
    """(UID, keys) of the card in the field, without changing anything but the read counter.

    GetVersion shows the UID unless random ID is on; then the SUN URL is decrypted with each
    K1 the store holds (a :class:`~station.ntag424.keys.KeyStore` can, other stores cannot).
    """
    yield from cmd.iso_select_application()
    version = yield from cmd.get_version()
    if not version.random_uid:
        return version.uid, store.keys_for(version.uid)
    if not isinstance(store, keys.KeyStore):
        return None, None
    url = yield from flows.read_sun_url()
    try:
        match = store.verify(sun.parse_sun_url(url))
    except (InvalidTap, UsageError):
        return None, None
    return match.uid, match.keys


# -- a card on a reader -----------------------------------------------------------------------


@dataclass(frozen=True)
class ReaderChoice:
    """Where the card is: backend, reader name substring, how long to wait, emulated state."""

    backend: str = "pcsc"
    reader: str = ""
    timeout: float = DEFAULT_TIMEOUT
    state: Path | None = None
    create_state: bool = False
    """Emulated only: a missing state file becomes a factory-fresh card (for provision)."""


def _emulated_card(choice: ReaderChoice) -> Any:
    from station.emulator.card import EmulatedCard
    from station.emulator.state import StateError, load_state, save_state

    if choice.state is None:
        raise BadInput("the emulated backend needs --state FILE (the emulated card's JSON state)")
    if not choice.state.exists():
        if not choice.create_state:
            raise BadInput(f"--state {choice.state}: no such card state (provision creates one)")
        card = EmulatedCard.factory(uid=b"\x04" + os.urandom(6))
        save_state(choice.state, card.to_state())
        return card
    try:
        return EmulatedCard.from_state(load_state(choice.state))
    except (StateError, OSError) as exc:
        raise BadInput(f"--state {choice.state}: {exc}") from None


@contextmanager
def card_on_reader(choice: ReaderChoice) -> Iterator[CardLink]:
    """Open the reader, wait for a card, yield its link; close everything afterwards.

    With the emulated backend the card comes from ``choice.state`` and its memory (keys,
    counters, files) is written back on the way out, even when the flow failed half-way,
    exactly as a real card keeps whatever was written before it was pulled.
    """
    from station.readers.registry import BACKENDS, open_reader

    if choice.backend not in BACKENDS:
        raise BadInput(f"unknown backend {choice.backend!r}; use one of {', '.join(BACKENDS)}")
    if choice.timeout <= 0:
        raise BadInput("--timeout must be more than 0 seconds")
    card = _emulated_card(choice) if choice.backend == "emulated" else None
    try:
        reader = open_reader(choice.backend, choice.reader)
    except ReaderError as exc:
        raise EnvironmentProblem(str(exc)) from None
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    try:
        if card is not None:
            reader.present(card)  # type: ignore[attr-defined]
        try:
            link = reader.wait_for_card(choice.timeout)
        except ReaderError as exc:
            raise EnvironmentProblem(str(exc)) from None
        if link is None:
            raise NoCard(f"no card on {reader.name!r} within {choice.timeout:g} s")
        try:
            yield link
        except CardRemoved:
            raise NoCard(
                "the card left the field during the exchange: hold it still and run the command "
                "again (after an interrupted provision or wipe, run `station card check`)"
            ) from None
        except ReaderError as exc:
            raise EnvironmentProblem(f"reader failed mid-exchange: {exc}") from None
        finally:
            link.close()
    finally:
        reader.close()
        if card is not None and choice.state is not None:
            from station.emulator.state import save_state

            save_state(choice.state, card.to_state())


def run_flow(link: CardLink, flow: Flow[Any]) -> Any:
    return flows.drive(flow, link.transceive)


# -- check ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrackerView:
    """What the tracker knows about a card (``tracker`` ``/cards/{uid}/status``)."""

    status: str
    last_counter: int | None


class TrackerLookup(Protocol):
    def __call__(self, uid_hex: str) -> TrackerView: ...


def http_tracker(url: str, token: str, *, timeout: float = 5.0) -> TrackerLookup:
    """Ask a tracker's API with the station token (the station's own recorder does the HTTP)."""
    import httpx

    from station.recorder import HttpRecorder, RecorderUnavailable

    def lookup(uid_hex: str) -> TrackerView:
        client = httpx.Client(base_url=url, timeout=httpx.Timeout(timeout, connect=2.0))
        recorder = HttpRecorder(client, token)
        try:
            status = recorder.card_status(uid_hex)
        except RecorderUnavailable as exc:
            raise EnvironmentProblem(f"tracker at {url}: {exc}") from None
        finally:
            recorder.close()
        return TrackerView(status.status, status.last_counter)

    return lookup


def database_tracker(database_url: str) -> TrackerLookup:
    """Read the tracker's database directly (station and tracker on one machine)."""
    from station.recorder import DirectRecorder, RecorderUnavailable

    def lookup(uid_hex: str) -> TrackerView:
        try:
            recorder = DirectRecorder(database_url, station_name="card-check")
        except Exception as exc:  # a bad URL or a missing driver: sqlalchemy raises many types
            what = type(exc).__name__
            raise EnvironmentProblem(f"cannot open the tracker database ({what})") from None
        try:
            status = recorder.card_status(uid_hex)
        except RecorderUnavailable as exc:
            raise EnvironmentProblem(str(exc)) from None
        finally:
            recorder.close()
        return TrackerView(status.status, status.last_counter)

    return lookup


@dataclass
class CheckResult:
    """A :class:`~station.ntag424.flows.CardReport` plus what the tools added around it."""

    report: flows.CardReport
    uid: bytes | None = None
    tracker: TrackerView | None = None
    environment_problem: str | None = None
    """Set when a check could not be completed (tracker unreachable): exit 4, not 1."""

    @property
    def ok(self) -> bool:
        return self.report.ok

    def to_dict(self) -> dict[str, Any]:
        out = self.report.to_dict()
        out["uid"] = self.uid.hex().upper() if self.uid else None
        out["tracker"] = (
            None
            if self.tracker is None
            else {"status": self.tracker.status, "last_counter": self.tracker.last_counter}
        )
        out["checks"] = [
            {"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.report.checks
        ]
        return out


def check_flow(
    source: KeySource,
    rng: Rng,
    *,
    signature_key: bytes | None = None,
) -> Flow[CheckResult]:
    """:func:`flows.check_card` with the keys resolved for this card and the extra lines."""
    uid: bytes | None = None
    card_keys: keys.KeySet | None = source.fixed
    unknown_card = False
    if source.store is not None:
        uid, card_keys = yield from identify_keys(source.store)
        unknown_card = card_keys is None
    public_key = NXP_NTAG424_PUBLIC_KEY if signature_key is None else signature_key
    report = yield from flows.check_card(rng, keys=card_keys, public_key=public_key)
    if report.version is not None and not report.version.random_uid:
        uid = report.version.uid
    _explain_signature(report, custom_key=signature_key is not None)

    if card_keys is None and source.k1k2 is not None and report.url is not None:
        k1, k2 = source.k1k2
        try:
            result = sun.verify_sun_reference(sun.parse_sun_url(report.url), k1, k2)
            report.sun_uid, report.sun_counter = result.identity()
            report.add("sun", True, f"counter {report.sun_counter}")
        except (InvalidTap, UsageError) as exc:
            report.add("sun", False, getattr(exc, "reason", str(exc)))
    if not any(c.name == "sun" for c in report.checks):
        if source.empty:
            why = "not checked: no keys given (--issuer-key, --keys or --k1/--k2)"
        elif unknown_card:
            why = "none of the keys we hold belong to this card"
        else:
            why = "no SUN URL on the card to verify"
        report.add("sun", False, why)
    if uid is None:
        uid = report.sun_uid
    _check_key_versions(report, card_keys)
    _complete_lines(report)
    return CheckResult(report, uid=uid)


def _explain_signature(report: flows.CardReport, *, custom_key: bool) -> None:
    """Say plainly whose signature it is: a failed line must read "not NXP-signed"."""
    for i, check in enumerate(report.checks):
        if check.name != "originality_signature":
            continue
        if check.ok:
            detail = "signed by the --signature-key given" if custom_key else "NXP-signed"
        elif check.detail:
            detail = f"not NXP-signed: {check.detail}" if not custom_key else check.detail
        elif custom_key:
            detail = "the signature does not verify against the --signature-key given"
        else:
            detail = (
                "not NXP-signed: the signature does not verify against NXP's public key "
                "(a counterfeit chip, or an emulated card)"
            )
        report.checks[i] = flows.Check(check.name, check.ok, detail)


def _complete_lines(report: flows.CardReport) -> None:
    """Lines the flow leaves out or leaves terse: SDM when the URL could not be read, and
    what a failed key 0 authentication means."""
    names = {c.name for c in report.checks}
    settings = report.ndef_settings
    if "sdm" not in names and settings is not None:
        if settings.sdm is None:
            report.add("sdm", False, "the NDEF file has no SDM settings (factory, not a Bolt Card)")
        else:
            report.add("sdm", False, "SDM is on but the NDEF URL cannot be read")
    for i, check in enumerate(report.checks):
        if check.name == "key0":
            detail = (
                "key 0 authenticates with our K0"
                if check.ok
                else f"key 0 does not authenticate with our K0 ({check.detail})"
            )
            report.checks[i] = flows.Check("key0", check.ok, detail)


def _check_key_versions(report: flows.CardReport, card_keys: keys.KeySet | None) -> None:
    versions = report.key_versions
    if len(versions) != 5:
        report.add("key_versions", False, "the card did not report all five key versions")
        return
    shown = " ".join(f"{n}:{v:02X}" for n, v in sorted(versions.items()))
    if card_keys is not None:
        want = card_keys.version
        ok = all(v == want for v in versions.values())
        report.add("key_versions", ok, shown if ok else f"{shown} (our keys are version {want})")
        return
    ok = len(set(versions.values())) == 1 and versions[0] != flows.FACTORY_KEY_VERSION
    report.add("key_versions", ok, shown if ok else f"{shown} (expected one non-zero version)")


def add_tracker_line(result: CheckResult, lookup: TrackerLookup) -> None:
    """Compare the card's SUN counter with the tracker's last one: a clone or a replayed card
    shows up as a counter at or below what the tracker already saw."""
    report = result.report
    if result.uid is None:
        report.add("tracker_counter", False, "the card's UID is unknown (random ID and no keys)")
        return
    try:
        view = lookup(result.uid.hex().upper())
    except EnvironmentProblem as exc:
        result.environment_problem = str(exc)
        report.add("tracker_counter", False, f"tracker unreachable: {exc}")
        return
    result.tracker = view
    counter = report.sun_counter
    if view.status == "blocked":
        report.add("tracker_counter", False, "the tracker lists this card as blocked")
    elif view.status == "wiped":
        report.add("tracker_counter", False, "the tracker lists this card as wiped")
    elif counter is None:
        report.add("tracker_counter", False, "the card's counter is unknown (SUN did not verify)")
    elif view.last_counter is None:
        report.add("tracker_counter", True, f"card {counter}; the tracker has not seen a tap yet")
    elif counter > view.last_counter:
        report.add("tracker_counter", True, f"card {counter} > tracker {view.last_counter}")
    else:
        report.add(
            "tracker_counter",
            False,
            f"card {counter} <= tracker {view.last_counter}: a cloned or rolled-back card",
        )


def check(
    choice: ReaderChoice,
    source: KeySource,
    *,
    signature_key: bytes | None = None,
    tracker: TrackerLookup | None = None,
    rng: Rng = os.urandom,
) -> CheckResult:
    """Inspect the card on the reader (changes nothing but the SDM read counter)."""
    with card_on_reader(choice) as link:
        try:
            flow = check_flow(source, rng, signature_key=signature_key)
            result: CheckResult = run_flow(link, flow)
        except Ntag424Error as exc:
            raise Refused(f"not a working NTAG 424 DNA: {_card_error(exc)}") from None
    if tracker is not None:
        add_tracker_line(result, tracker)
    return result


def _card_error(exc: Ntag424Error) -> str:
    reason = getattr(exc, "reason", None)
    text = str(exc) or type(exc).__name__
    return f"{text} ({reason})" if reason and reason != text else text


# -- provision --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProvisionResult:
    uid: bytes
    url: str = field(repr=False)  # a fresh p/c: never in a log
    counter: int
    key_version: int
    card_keys: keys.KeySet = field(repr=False)
    lnurlw: str

    def to_dict(self) -> dict[str, Any]:
        """Key-free summary for ``--json``."""
        return {
            "uid": self.uid.hex().upper(),
            "url": self.url,
            "counter": self.counter,
            "key_version": self.key_version,
            "lnurlw": self.lnurlw,
        }

    def card_response(self) -> dict[str, Any]:
        """The ``new_bolt_card_response`` for this card (holds keys: ``--print-keys`` only)."""
        out = keys.new_bolt_card_response(self.card_keys, self.lnurlw)
        out.update(uid=self.uid.hex(), version=self.key_version)
        return out


def url_template(text: str) -> str:
    """``lnurlw://host/path`` (placeholders added) or a full template with ``p=…&c=…``."""
    if not text.startswith("lnurlw://"):
        raise BadInput("--url-template must start with lnurlw://")
    template = text if "p=" in text else ndef.bolt_card_template(text)
    try:
        ndef.bolt_card_layout(template)
    except UsageError as exc:
        raise BadInput(f"--url-template: {exc}") from None
    return template


def provision(
    choice: ReaderChoice,
    template: str,
    card_keys: keys.KeySet | Callable[[bytes], keys.KeySet],
    key_version: int,
    *,
    rng: Rng = os.urandom,
) -> ProvisionResult:
    """Program a blank card, read it back and verify it; a card that is not blank is refused."""
    chosen: list[keys.KeySet] = []

    def keys_for(uid: bytes) -> keys.KeySet:
        ks = card_keys(uid) if callable(card_keys) else card_keys
        chosen.append(ks)
        return ks

    with card_on_reader(choice) as link:
        try:
            report = run_flow(
                link, flows.provision_bolt_card(template, keys_for, rng, key_version=key_version)
            )
        except flows.CardNotBlank as exc:
            raise Refused(f"card is not blank: {exc}") from None
        except flows.ReadbackMismatch as exc:
            raise Refused(f"read-back failed, do not hand this card out: {exc}") from None
        except Ntag424Error as exc:
            raise Refused(f"provisioning failed: {_card_error(exc)}") from None
    lnurlw = template.split("?", 1)[0]
    return ProvisionResult(report.uid, report.url, report.counter, key_version, chosen[-1], lnurlw)


def check_keys_file(path: Path) -> dict[str, Any] | None:
    """The existing keys file at ``path`` (``None`` if there is none); refuse anything else.

    Called before a card is programmed, so a typo in ``--keys-out`` cannot leave a card whose
    random keys were never saved.
    """
    if not path.exists():
        if not path.parent.is_dir():
            raise BadInput(f"--keys-out {path}: the directory does not exist")
        return None
    existing = _read_json(path, "--keys-out")
    if not isinstance(existing, dict) or not isinstance(existing.get("cards"), list):
        raise BadInput(f'--keys-out {path}: not a keys file with a "cards" list')
    return existing


def add_to_keys_file(path: Path, entry: dict[str, Any]) -> None:
    """Add (or replace, by UID) one card in a station keys file ``{"cards": [...]}``.

    Each entry is a ``new_bolt_card_response`` plus ``uid`` and ``version``, which is what
    ``station sun verify --keys FILE`` and ``station card check --keys FILE`` read. Written
    atomically, mode 0600: it holds keys.
    """
    from station.emulator.state import save_state

    existing = check_keys_file(path)
    if existing is not None:
        uid = str(entry["uid"]).lower()
        cards = [c for c in existing["cards"] if str(c.get("uid", "")).lower() != uid]
        save_state(path, {**existing, "cards": [*cards, entry]})
        return
    save_state(path, {"cards": [entry]})


# -- wipe -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WipeResult:
    uid: bytes
    last_counter: int

    def to_dict(self) -> dict[str, Any]:
        return {"uid": self.uid.hex().upper(), "last_counter": self.last_counter, "wiped": True}


def wipe_flow(source: KeySource, rng: Rng) -> Flow[flows.WipeReport]:
    card_keys = source.fixed
    if card_keys is None and source.store is not None:
        _uid, card_keys = yield from identify_keys(source.store)
    if card_keys is None:
        raise Refused("none of the keys given belong to this card; the card was not changed")
    report: flows.WipeReport = yield from flows.wipe_card(card_keys, rng)
    return report


def wipe(choice: ReaderChoice, source: KeySource, *, rng: Rng = os.urandom) -> WipeResult:
    """Prove the keys with a SUN check and key authentication, then restore factory state."""
    with card_on_reader(choice) as link:
        try:
            report = run_flow(link, wipe_flow(source, rng))
        except InvalidTap:
            raise Refused(
                "the keys do not verify this card's SUN message (wrong keys, or the card is "
                "blank); the card was not changed"
            ) from None
        except flows.ReadbackMismatch as exc:
            raise Refused(f"wipe read-back failed: {exc}; run `station card check`") from None
        except Ntag424Error as exc:
            if isinstance(exc, AuthenticationError):
                raise Refused(
                    "the keys do not authenticate on this card; the card was not changed"
                ) from None
            raise Refused(f"wipe failed: {_card_error(exc)}") from None
    return WipeResult(report.uid, report.last_counter)
