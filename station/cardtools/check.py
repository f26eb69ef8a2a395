"""``station card check``: the flow's report plus the lines it cannot produce alone — key
versions against the keys we hold, a clear "not NXP-signed", and the card's counter against
what the tracker last saw."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from station.cardtools.check_extra import HINTS, extra_flow, result_of
from station.cardtools.errors import EnvironmentProblem, Refused, card_error
from station.cardtools.keysource import KeySource, identify_keys
from station.cardtools.reader import ReaderChoice, card_on_reader, run_flow
from station.cardtools.redact import redact_url
from station.ntag424 import flows, keys, sun
from station.ntag424.apdu import Flow
from station.ntag424.errors import InvalidTap, Ntag424Error, UsageError
from station.ntag424.signature import NXP_NTAG424_PUBLIC_KEY
from station.uplink.base import UplinkUnavailable

Rng = Callable[[int], bytes]


@dataclass(frozen=True)
class TrackerView:
    """What the tracker knows about a card (``tracker`` ``/cards/{uid}/status``)."""

    status: str
    last_counter: int | None


class TrackerLookup(Protocol):
    def __call__(self, uid_hex: str) -> TrackerView: ...


def http_tracker(url: str, token: str, *, timeout: float = 5.0) -> TrackerLookup:
    """Ask a tracker's API with the station token (the station's own uplink does the HTTP)."""
    import httpx  # optional: only a check against a remote tracker needs it

    from station.uplink.http import HttpUplink

    def lookup(uid_hex: str) -> TrackerView:
        client = httpx.Client(base_url=url, timeout=httpx.Timeout(timeout, connect=2.0))
        uplink = HttpUplink(client, token)
        try:
            status = uplink.card_status(uid_hex)
        except UplinkUnavailable as exc:
            raise EnvironmentProblem(f"tracker at {url}: {exc}") from None
        finally:
            uplink.close()
        return TrackerView(status.status, status.last_counter)

    return lookup


def database_tracker(database_url: str) -> TrackerLookup:
    """Read the tracker's database directly (station and tracker on one machine)."""
    def lookup(uid_hex: str) -> TrackerView:
        try:
            from station.uplink.direct import DirectUplink  # loads the tracker: optional

            uplink = DirectUplink(database_url, station_name="card-check")
        except Exception as exc:  # a bad URL or a missing driver: sqlalchemy raises many types
            what = type(exc).__name__
            raise EnvironmentProblem(f"cannot open the tracker database ({what})") from None
        try:
            status = uplink.card_status(uid_hex)
        except UplinkUnavailable as exc:
            raise EnvironmentProblem(str(exc)) from None
        finally:
            uplink.close()
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
        return all(c.ok or result_of(c.name, c.ok) == "warn" for c in self.report.checks)

    def to_dict(self) -> dict[str, Any]:
        out = self.report.to_dict()
        out["uid"] = self.uid.hex().upper() if self.uid else None
        out["tracker"] = (
            None
            if self.tracker is None
            else {"status": self.tracker.status, "last_counter": self.tracker.last_counter}
        )
        out["url"] = redact_url(self.report.url)
        out["checks"] = [
            {"check": c.name, "name": c.name, "ok": c.ok, "result": result_of(c.name, c.ok),
             "detail": c.detail, "hint": "" if c.ok else HINTS.get(c.name, "")}
            for c in self.report.checks
        ]
        return out


def check_flow(
    source: KeySource,
    rng: Rng,
    *,
    signature_key: bytes | None = None,
    allowed_hosts: Sequence[str] = (),
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
    yield from extra_flow(report, card_keys, allowed_hosts, rng)
    for i, c in enumerate(report.checks):
        if c.name == "ndef_url":
            report.checks[i] = flows.Check(c.name, c.ok, redact_url(c.detail) or "")
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
    allowed_hosts: Sequence[str] = (),
) -> CheckResult:
    """Inspect the card on the reader (changes nothing but the SDM read counter)."""
    with card_on_reader(choice) as link:
        try:
            flow = check_flow(source, rng, signature_key=signature_key,
                              allowed_hosts=allowed_hosts)
            result: CheckResult = run_flow(link, flow)
        except Ntag424Error as exc:
            raise Refused(f"not a working NTAG 424 DNA: {card_error(exc)}") from None
    if tracker is not None:
        add_tracker_line(result, tracker)
    return result
