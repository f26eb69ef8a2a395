"""One procedure that takes a card from whatever state :mod:`classify` found to a target —
the Bolt Card layout with our keys (provision, resume, reprogram) or the factory state (wipe,
from a configured, half-provisioned or half-wiped card).

It authenticates only with the key each key's version calls for (00: the factory key; our
version: our key), proves every changed key it will rely on before it changes anything, and
skips every step the card already shows as done, so running it again after any interruption
finishes the job. ``note(step)`` is called before and after every APDU that changes the card
(the journal); ``plan`` mode yields nothing and only lists the steps (``--dry-run``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from station.cardtools.classify import Classification
from station.ntag424 import commands as cmd
from station.ntag424 import flows, sun
from station.ntag424.apdu import Flow
from station.ntag424.errors import ProtocolError
from station.ntag424.filesettings import (
    FACTORY_NDEF_FILE,
    NDEF_FILE_NO,
    CommMode,
    bolt_card_ndef_settings,
)
from station.ntag424.ndef import NDEF_FILE_SIZE, BoltCardLayout
from station.ntag424.session import Session

Rng = Callable[[int], bytes]
Note = Callable[[str, bool], None]
FACTORY = flows.FACTORY_KEY


@dataclass(frozen=True)
class Target:
    """Where the card should end: five keys at one version, and the NDEF layout (or none)."""

    keys: tuple[bytes, bytes, bytes, bytes, bytes]
    version: int
    layout: BoltCardLayout | None  # None: factory file settings and an empty NDEF file

    @classmethod
    def factory(cls) -> Target:
        return cls((FACTORY,) * 5, flows.FACTORY_KEY_VERSION, None)


def current_keys(found: Classification) -> list[bytes]:
    """The key each slot holds, as its version says: 00 the factory key, ours otherwise."""
    held = found.card_keys
    out = []
    for n, v in enumerate(found.key_versions):
        if v == flows.FACTORY_KEY_VERSION:
            out.append(FACTORY)
        elif held is None:
            raise ProtocolError(f"key {n} is changed and we hold no key for it")
        else:
            out.append([held.k0, held.k1, held.k2, held.k3, held.k4][n])
    return out


def plan(found: Classification, target: Target) -> list[str]:
    """The steps :func:`rekey_flow` will take, in order, without keys (``--dry-run``)."""
    cur = current_keys(found)
    steps = [f"90 71 EV2First key 0 ({_which(found, 0)} key)", "90 51 GetCardUID"]
    for n in _proofs(found):
        steps.append(f"90 77 EV2NonFirst key {n} (prove our key {n})")
    if _proofs(found):
        steps.append(f"90 77 EV2NonFirst key 0 ({_which(found, 0)} key)")
    if target.layout is not None:
        steps += ["90 8D WriteData file 02 (the URL template)",
                  "90 5F ChangeFileSettings file 02 (SDM on: Bolt Card layout)"]
    else:
        steps += ["90 5F ChangeFileSettings file 02 (factory: SDM off)",
                  "90 8D WriteData file 02 (256 zero bytes)"]
    for n in _key_order(target):
        if _needs_change(found, cur, target, n):
            steps.append(f"90 C4 ChangeKey key {n} -> version {target.version:02X} "
                         "[key data and MAC redacted]")
    if _needs_change(found, cur, target, 0):
        steps.append(f"90 C4 ChangeKey key 0 -> version {target.version:02X} "
                     "[key data and MAC redacted]")
    steps.append("read back: NDEF URL, SUN, file settings, key 0 and key versions")
    return steps


def _which(found: Classification, n: int) -> str:
    return "factory" if found.key_versions[n] == flows.FACTORY_KEY_VERSION else "our"


def _proofs(found: Classification) -> list[int]:
    """Changed keys 1-4 to prove before anything changes (K1/K2 are proven by a good SUN)."""
    proven_by_sun = {1, 2} if found.sun_verified else set()
    return [n for n in found.changed_keys if n != 0 and n not in proven_by_sun]


def _key_order(target: Target) -> list[int]:
    # Provision changes 1..4 then 0; wipe 4..1 then 0: classify reads progress from this order.
    return [1, 2, 3, 4] if target.layout is not None else [4, 3, 2, 1]


def _needs_change(found: Classification, cur: list[bytes], target: Target, n: int) -> bool:
    return found.key_versions[n] != target.version or cur[n] != target.keys[n]


def rekey_flow(
    found: Classification, target: Target, rng: Rng, note: Note
) -> Flow[bytes]:
    """Bring the card from ``found`` to ``target``; returns the card's UID (GetCardUID)."""
    cur = current_keys(found)
    yield from cmd.iso_select_application()
    session = yield from flows.authenticate(0, cur[0], rng)
    uid = yield from cmd.get_card_uid(session)
    if found.uid is not None and uid != found.uid:
        raise ProtocolError("GetCardUID differs from the UID the card showed; not changing it")
    proofs = _proofs(found)
    for n in proofs:
        session = yield from flows.authenticate(n, cur[n], rng, session)
    if proofs:
        session = yield from flows.authenticate(0, cur[0], rng, session)

    if target.layout is not None:
        layout = target.layout
        current = yield from cmd.get_file_settings(NDEF_FILE_NO, session)
        step = "WriteData file 02 (URL template)"
        note(step, False)
        yield from cmd.write_data(NDEF_FILE_NO, 0, layout.file_data, current.comm_mode, session)
        note(step, True)
        step = "ChangeFileSettings file 02 (SDM on)"
        note(step, False)
        settings = bolt_card_ndef_settings(layout.picc_data_offset, layout.mac_offset)
        yield from cmd.change_file_settings(session, NDEF_FILE_NO, settings)
        note(step, True)
    else:
        step = "ChangeFileSettings file 02 (factory)"
        note(step, False)
        yield from cmd.change_file_settings(session, NDEF_FILE_NO, FACTORY_NDEF_FILE)
        note(step, True)
        step = "WriteData file 02 (zeros)"
        note(step, False)
        yield from cmd.write_data(NDEF_FILE_NO, 0, bytes(NDEF_FILE_SIZE), CommMode.PLAIN, session)
        note(step, True)
    for n in _key_order(target):
        if _needs_change(found, cur, target, n):
            step = f"ChangeKey key {n}"
            note(step, False)
            yield from cmd.change_key(session, n, target.keys[n], target.version, cur[n])
            note(step, True)
    if _needs_change(found, cur, target, 0):
        note("ChangeKey key 0", False)
        yield from cmd.change_key(session, 0, target.keys[0], target.version)
        note("ChangeKey key 0", True)
    return uid


@dataclass(frozen=True)
class Readback:
    url: str
    counter: int


def readback_flow(uid: bytes, target: Target, rng: Rng) -> Flow[Readback]:
    """Prove the result over the path a station uses: URL, SUN, settings, key 0, versions."""
    url, counter = "", 0
    if target.layout is not None:
        url = yield from flows.read_sun_url()
        if flows.template_of(url) != target.layout.template:
            raise flows.ReadbackMismatch("the card's URL does not match the template written")
        result = sun.verify_sun_reference(sun.parse_sun_url(url), target.keys[1], target.keys[2])
        sun_uid, counter = result.identity()
        if sun_uid != uid:
            raise flows.ReadbackMismatch("the SUN UID differs from GetCardUID")
        want = bolt_card_ndef_settings(target.layout.picc_data_offset, target.layout.mac_offset)
    else:
        want = FACTORY_NDEF_FILE
    yield from cmd.iso_select_application()
    session: Session = yield from flows.authenticate(0, target.keys[0], rng)
    settings = yield from cmd.get_file_settings(NDEF_FILE_NO, session)
    if replace(settings, size=None, file_type=0) != replace(want, size=None, file_type=0):
        raise flows.ReadbackMismatch("the NDEF file settings differ from those written")
    for n in range(5):
        version = yield from cmd.get_key_version(n, session)
        if version != target.version:
            raise flows.ReadbackMismatch(f"key {n} reports version {version:02X}")
    return Readback(url, counter)
