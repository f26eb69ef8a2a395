"""The lines ``check`` adds so that it cannot pass a card it must fail: the URL's scheme and
host, the CC file, the factory key on every key (not only keys at version 00), a SUN URL copied
from another card, and whether random UID is on. Plus a hint for every line and its
``pass | warn | fail`` result."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from station.ntag424 import commands as cmd
from station.ntag424 import flows, keys
from station.ntag424.apdu import Flow
from station.ntag424.errors import AuthenticationDelay, AuthenticationError, CardError

Rng = Callable[[int], bytes]

HINTS: dict[str, str] = {
    "ntag424_dna": "not an NTAG 424 DNA: this card cannot be a Bolt Card",
    "originality_signature": "a counterfeit or emulated chip; --trust-test-signature only "
    "for rehearsals with the emulated card",
    "cc_file": "the capability container is damaged: phones will not read the card; wipe it",
    "ndef_url": "the card holds no readable URL: provision it",
    "url_scheme": "a Bolt Card URL must start with lnurlw://: reprogram the card",
    "allowed_host": "the URL points to a host this station does not pay to: do not hand it out",
    "sdm": "SDM is not the Bolt Card layout: wipe and provision again",
    "ndef_access": "anyone can rewrite the URL: wipe and provision again",
    "sun": "the SUN URL does not verify with the keys given: wrong keys, or not our card",
    "sun_uid": "the SUN URL was copied from another card (a clone): keep it off the network",
    "key0": "key 0 does not authenticate with our K0: not our card, or the wrong key version",
    "keys_changed": "a factory key lets anyone reprogram the card: provision or wipe it",
    "key_versions": "the key versions are not ours: use the keys of that version",
    "random_uid": "",
    "tracker_counter": "the tracker says this card is blocked, wiped or replayed",
}
WARN_ONLY = {"allowed_host_unset"}


def extra_flow(
    report: flows.CardReport,
    card_keys: keys.KeySet | None,
    allowed_hosts: Sequence[str],
    rng: Rng,
) -> Flow[None]:
    """Add the lines; only the factory-key probes authenticate (once per key, stopping at
    the card's first 91AD), and never for a key our own keys already proved."""
    yield from _cc_file(report)
    _url_lines(report, allowed_hosts)
    _sun_uid(report)
    _random_uid(report)
    yield from _factory_probes(report, card_keys, rng)


def _cc_file(report: flows.CardReport) -> Flow[None]:
    try:
        yield from cmd.iso_select_application()
        yield from cmd.iso_select_file(cmd.CC_FILE_ID)
        cc = yield from cmd.iso_read_binary(0, 0x17)
    except CardError as exc:
        report.add("cc_file", False, f"cannot read the CC file ({exc.sw:04X})")
        return
    # NFC Forum T4T CC (datasheet §8.2.3.1): CCLEN 0017, mapping 2.0, NDEF TLV 04 06 E104.
    ok = (len(cc) >= 15 and int.from_bytes(cc[0:2], "big") >= 15 and cc[2] == 0x20
          and cc[7:9] == b"\x04\x06" and cc[9:11] == b"\xe1\x04")
    report.add("cc_file", ok, "NFC Forum T4T 2.0, NDEF file E104" if ok
               else f"not a valid capability container ({cc[:15].hex().upper()})")


def _url_lines(report: flows.CardReport, allowed_hosts: Sequence[str]) -> None:
    if report.url is None:
        return
    parts = urlsplit(report.url)
    report.add("url_scheme", parts.scheme == "lnurlw",
               f"scheme {parts.scheme or '(none)'}" + ("" if parts.scheme == "lnurlw"
                                                       else ", expected lnurlw"))
    host = (parts.hostname or "").lower()
    if not allowed_hosts:
        report.add("allowed_host_unset", True, f"host {host}: no allow-list given "
                   "(--allowed-host HOST or --config with allowed_hosts)")
        return
    ok = host in {h.lower() for h in allowed_hosts}
    report.add("allowed_host", ok, f"host {host}" + ("" if ok else " is not in the allow-list"))


def _sun_uid(report: flows.CardReport) -> None:
    version = report.version
    if report.sun_uid is None or version is None or version.random_uid:
        return
    ok = report.sun_uid == version.uid
    report.add("sun_uid", ok, "the UID in p is this card's UID" if ok
               else f"p holds UID {report.sun_uid.hex().upper()}, the card is "
               f"{version.uid.hex().upper()}")


def _random_uid(report: flows.CardReport) -> None:
    if report.version is None:
        return
    on = report.version.random_uid
    report.add("random_uid", True, "on: the reader sees a different UID each tap; GetCardUID "
               "needs key 0" if on else "off: the reader sees the card's fixed UID")


def _factory_probes(
    report: flows.CardReport, card_keys: keys.KeySet | None, rng: Rng
) -> Flow[None]:
    """Probe the factory key on every key not proven otherwise (also at version 01)."""
    proven = set()
    if any(c.name == "key0" and c.ok for c in report.checks):
        proven.add(0)
    if any(c.name == "sun" and c.ok for c in report.checks) and card_keys is not None:
        proven |= {1, 2}
    if card_keys is not None:
        held = [card_keys.k0, card_keys.k1, card_keys.k2, card_keys.k3, card_keys.k4]
        proven = {n for n in proven if held[n] != flows.FACTORY_KEY}
    skipped: list[int] = []
    yield from cmd.iso_select_application()
    if card_keys is not None:  # prove keys 3/4 with ours: a success costs nothing
        held = [card_keys.k0, card_keys.k1, card_keys.k2, card_keys.k3, card_keys.k4]
        for n in (3, 4):
            if report.key_versions.get(n) == card_keys.version and held[n] != flows.FACTORY_KEY:
                try:
                    yield from flows.authenticate(n, held[n], rng)
                    proven.add(n)
                    report.factory_keys[n] = False
                except (AuthenticationError, AuthenticationDelay):
                    pass
    for n in range(5):
        if n in proven or report.factory_keys.get(n):
            continue
        if report.key_versions.get(n, 0) == flows.FACTORY_KEY_VERSION and n in report.factory_keys:
            continue  # the flow already probed it at version 00
        try:
            yield from flows.authenticate(n, flows.FACTORY_KEY, rng)
            report.factory_keys[n] = True
        except AuthenticationError:
            report.factory_keys[n] = False
        except AuthenticationDelay:
            skipped = [k for k in range(n, 5) if k not in proven]
            break
    factory = sorted(n for n, f in report.factory_keys.items() if f)
    report.checks = [c for c in report.checks if c.name != "keys_changed"]
    detail = f"factory keys: {factory}" if factory else "no key is the factory key"
    if skipped:
        detail += f"; not probed (the card asked for a pause, 91AD): {skipped}"
    report.add("keys_changed", not factory, detail)
    if skipped and not factory:
        report.add("keys_probe_incomplete", True, detail)


def result_of(name: str, ok: bool) -> str:
    if name in WARN_ONLY or name == "keys_probe_incomplete":
        return "warn"
    return "pass" if ok else "fail"
