"""``station card wipe``: prove the keys, then restore the card's factory state."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from station.cardtools.errors import Refused, card_error
from station.cardtools.keysource import KeySource, identify_keys
from station.cardtools.reader import ReaderChoice, card_on_reader, run_flow
from station.ntag424 import flows
from station.ntag424.apdu import Flow
from station.ntag424.errors import AuthenticationError, InvalidTap, Ntag424Error

Rng = Callable[[int], bytes]


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
            raise Refused(f"wipe failed: {card_error(exc)}") from None
    return WipeResult(report.uid, report.last_counter)
