"""Classify, decide, journal, act: the skeleton ``provision`` and ``wipe`` share.

Nothing here authenticates before :func:`classify_flow` has said what the card is and the
command has decided the state allows it; then :func:`rekey_flow` authenticates only with the
keys that state calls for. A failed authentication is counted in the journal and stops the
command: it is never retried with another key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from station.cardtools.classify import Classification, KeysFor, classify_flow
from station.cardtools.errors import Refused, card_error
from station.cardtools.journal import Entry, Journal
from station.cardtools.rekey import Readback, Target, readback_flow, rekey_flow
from station.ntag424 import flows
from station.ntag424.apdu import Flow
from station.ntag424.errors import AuthenticationDelay, AuthenticationError, Ntag424Error
from station.readers.base import CardLink

Rng = Callable[[int], bytes]


class Counter:
    """``transceive`` that counts APDUs, so the journal can say which one was last."""

    def __init__(self, link: CardLink) -> None:
        self.link = link
        self.count = 0

    def __call__(self, apdu: bytes) -> bytes:
        self.count += 1
        return self.link.transceive(apdu)

    def run(self, flow: Flow[Any]) -> Any:
        return flows.drive(flow, self)


def classify(link: Counter, keys_for: KeysFor | None) -> Classification:
    try:
        found: Classification = link.run(classify_flow(keys_for))
    except Ntag424Error as exc:
        raise Refused(f"not a working NTAG 424 DNA: {card_error(exc)}") from None
    return found


@dataclass
class Outcome:
    uid: bytes
    readback: Readback
    found: Classification


def act(
    link: Counter,
    found: Classification,
    target: Target,
    journal: Journal,
    operation: str,
    rng: Rng,
    *,
    template: str = "",
    reason: str = "",
) -> Outcome:
    """Run :func:`rekey_flow` then the read-back, journaling every changing step."""
    assert found.uid is not None
    entry = journal.check_attempts(found.uid)
    entry.operation, entry.status, entry.reason = operation, "running", reason
    entry.key_version, entry.template = target.version, template
    entry.keys_changed = found.changed_keys
    journal.put(entry)

    def note(step: str, done: bool) -> None:
        if done and step.startswith("ChangeKey key "):
            n = int(step.rsplit(" ", 1)[1])
            changed = set(entry.keys_changed)
            changed.add(n) if target.version else changed.discard(n)
            entry.keys_changed = sorted(changed)
        journal.note(entry, step, link.count + (0 if done else 1), done=done)

    try:
        uid = link.run(rekey_flow(found, target, rng, note))
        readback = link.run(readback_flow(uid, target, rng))
    except AuthenticationDelay:
        _failed(journal, entry, "91AD")
        raise Refused(
            f"card {entry.uid} asks for a pause after failed authentications (91AD): leave it "
            "alone, and do not retry with other keys"
        ) from None
    except AuthenticationError as exc:
        _failed(journal, entry, card_error(exc))
        raise Refused(
            f"a key we hold did not authenticate on card {entry.uid} ({card_error(exc)}); "
            f"the card was not changed. Failed attempts recorded: {entry.failed_auths} "
            "(the chip locks a key for good at its limit: find the right keys before trying "
            "again)"
        ) from None
    except flows.ReadbackMismatch as exc:
        entry.status = "refused"
        journal.put(entry)
        raise Refused(f"read-back failed, do not hand this card out: {exc}") from None
    except Ntag424Error as exc:
        entry.status = "interrupted"
        journal.put(entry)
        raise Refused(f"{operation} failed: {card_error(exc)}; run `station card check`") from None
    except BaseException:
        entry.status = "interrupted"
        journal.put(entry)
        raise
    entry.status, entry.step = "done", "read back"
    journal.put(entry)
    return Outcome(uid, readback, found)


def _failed(journal: Journal, entry: Entry, what: str) -> None:
    entry.status = "refused"
    journal.record_failure(entry, what)
