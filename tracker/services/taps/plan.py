"""Which taps of a run a batch can store set-based, decided in Python before any write.

A station catching up sends hundreds of taps at once, nearly all the common case (an accepted,
verified tap on a known, unblocked card whose counter moves up). Recording them one by one is
one transaction each; :mod:`tracker.services.taps.bulk` stores a run of them in one
transaction instead. This module is the pure part: given the run's cards as the database has
them (read under lock) and, when asked for, the stored taps of some idempotency keys, it works
out what recording the taps one by one, in order, would answer for each - as long as that
answer needs nothing but the compare-and-set:

* the counter is above the card's last counter (the database's, or the last one this run
  stored for that card): stored (201); an unknown card is created, as ``record_tap`` does;
* otherwise, the key names a tap this run stores earlier, or one this station already stored:
  already stored (200) with that tap, nothing written;
* otherwise (a replay, a blocked card, a key of another station) the plan stops there: the
  general path (:func:`~tracker.services.taps.record.record_tap`) answers that tap on its own
  and the next run starts after it. Its answer never depends on a tap after it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from tracker.models import TapCreate


class CardState(NamedTuple):
    """A card row as the run found it (``pk`` None: the card is not in the database yet)."""

    pk: int | None
    last_counter: int | None
    blocked: bool
    card_id: str | None


UNSEEN = CardState(pk=None, last_counter=None, blocked=False, card_id=None)


class StoredKey(NamedTuple):
    """A tap already in the database under an idempotency key."""

    tap_id: int
    station_pk: int


class CardChange(NamedTuple):
    """What the run does to one card: its new last counter and (first one seen) card id."""

    last_counter: int
    card_id: str | None


@dataclass
class Plan:
    """The answers for ``taps[:len(steps)]``; each step is ``("insert", i)`` (store
    ``taps[i]``), ``("same", i)`` (already stored: the tap ``taps[i]`` stores in this run) or
    ``("stored", tap_id)`` (already stored before the run)."""

    steps: list[tuple[str, int]] = field(default_factory=list)
    inserts: list[int] = field(default_factory=list)
    cards: dict[str, CardChange] = field(default_factory=dict)
    new_cards: list[str] = field(default_factory=list)
    #: Keys of taps whose counter did not move up: look them up and plan again.
    missing_keys: list[str] = field(default_factory=list)


def plan_run(
    taps: Sequence[TapCreate],
    cards: Mapping[str, CardState],
    *,
    station_id: int,
    stored: Mapping[str, StoredKey] | None = None,
) -> Plan:
    """The plan for ``taps`` (all the common case). Without ``stored`` (the first pass) a tap
    whose counter did not move up only lists its key in ``missing_keys``; when that list is
    empty the plan is complete, else the caller looks the keys up and plans again with them.
    """
    plan = Plan()
    last: dict[str, int] = {}
    planned: dict[str, int] = {}
    for index, tap in enumerate(taps):
        uid = tap.card_uid
        card = cards.get(uid, UNSEEN)
        before = last.get(uid, card.last_counter)
        if not card.blocked and (before is None or tap.counter > before):
            last[uid] = tap.counter
            planned[tap.idempotency_key] = index
            plan.steps.append(("insert", index))
            plan.inserts.append(index)
            change = plan.cards.get(uid)
            if change is None:
                if card.pk is None:
                    plan.new_cards.append(uid)
                card_id = card.card_id or tap.card_id
            else:
                card_id = change.card_id or tap.card_id
            plan.cards[uid] = CardChange(tap.counter, card_id)
            continue
        if tap.idempotency_key in planned:
            plan.steps.append(("same", planned[tap.idempotency_key]))
            continue
        if stored is None:
            plan.missing_keys.append(tap.idempotency_key)
            plan.steps.append(("stored", 0))  # a placeholder: this plan is not used
            continue
        found = stored.get(tap.idempotency_key)
        if found is None or found.station_pk != station_id:
            break  # the general path answers this one (409 or 403)
        plan.steps.append(("stored", found.tap_id))
    return plan


def answers(plan: Plan, ids: Mapping[int, int]) -> list[tuple[int, bool]]:
    """``(tap_id, created)`` per planned tap, once the inserted taps have their ``ids``
    (by index in the run)."""
    out: list[tuple[int, bool]] = []
    for kind, value in plan.steps:
        if kind == "insert":
            out.append((ids[value], True))
        elif kind == "same":
            out.append((ids[value], False))
        else:
            out.append((value, False))
    return out
