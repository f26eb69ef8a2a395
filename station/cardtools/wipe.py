"""``station card wipe``: restore the factory state from any state our procedures leave.

Classification first (no key spent). A configured card proves K1/K2 with its SUN URL and the
other keys by authentication; a card whose SUN message is gone (a wipe or a provision cut
off half-way) proves every changed key by authentication with the key its version calls for.
Keys 4..1 are changed back before key 0, so a wipe cut off again is still recognisable.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from station.cardtools import classify, procedure
from station.cardtools.errors import Refused
from station.cardtools.journal import Journal
from station.cardtools.keysource import KeySource
from station.cardtools.reader import ReaderChoice, card_on_reader
from station.cardtools.rekey import Target, plan
from station.ntag424 import keys

Rng = Callable[[int], bytes]
WIPEABLE = (classify.CONFIGURED, classify.PARTIAL_PROVISION, classify.PARTIAL_WIPE)


@dataclass(frozen=True)
class WipeResult:
    uid: bytes
    last_counter: int | None
    found: str = ""
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"uid": self.uid.hex().upper(), "last_counter": self.last_counter,
                "wiped": not self.dry_run, "found": self.found, "dry_run": self.dry_run}


def keys_for_source(source: KeySource) -> classify.KeysFor | None:
    if source.fixed is not None:
        fixed = source.fixed
        return lambda _uid: fixed
    if source.store is not None:
        store = source.store
        return store.keys_for
    return None


def wipe(
    choice: ReaderChoice,
    source: KeySource,
    *,
    rng: Rng = os.urandom,
    journal: Journal | None = None,
    dry_run: bool = False,
    plan_out: Callable[[str], None] | None = None,
    keys_override: Callable[[bytes], keys.KeySet | None] | None = None,
) -> WipeResult:
    """Classify, then restore factory keys, file settings and an empty NDEF file."""
    journal = journal if journal is not None else Journal(None)
    keys_for = keys_override or keys_for_source(source)
    with card_on_reader(choice) as raw:
        link = procedure.Counter(raw)
        found = procedure.classify(link, keys_for)
        if found.state == classify.BLANK:
            raise Refused("the card is already blank (factory keys, no SDM); nothing to wipe, "
                          "the card was not changed")
        if found.state not in WIPEABLE or found.uid is None:
            raise Refused(
                f"none of the keys given belong to this card ({found.state}: {found.detail}); "
                "the card was not changed and no authentication was tried"
            )
        target = Target.factory()
        if dry_run:
            for step in plan(found, target):
                (plan_out or print)(step)
            return WipeResult(found.uid, found.sun_counter, found.state, dry_run=True)
        out = procedure.act(link, found, target, journal, "wipe", rng)
    return WipeResult(out.uid, found.sun_counter, found.state)
