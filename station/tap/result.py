"""What happened to one presentation of a card, and the words the tracker stores for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

ACCEPTED: Final = "accepted"
REFUSED: Final = "refused"

# Refusal reasons, as stored in the tracker and shown to operators.
INVALID_TAP: Final = "invalid_tap"
UNKNOWN_CARD: Final = "unknown_card"
CARD_BLOCKED: Final = "card_blocked"
CARD_WIPED: Final = "card_wiped"
REPLAY: Final = "counter_not_increasing"
HOST_NOT_ALLOWED: Final = "host_not_allowed"


class UnsupportedCard(Exception):
    """The card in the field is not a Bolt Card we can read (not an NTAG 424 DNA, blank card,
    no SUN URL). Nothing is recorded; the daemon logs one line and waits for removal."""

    def __init__(self, reason: str, apdus: int = 0) -> None:
        self.reason = reason
        self.apdus = apdus
        super().__init__(f"not a Bolt Card: {reason}")


@dataclass(frozen=True)
class TapResult:
    """What happened to one presentation of a card. ``url`` holds p/c: never log it.

    ``key`` is the idempotency key the tap was spooled under (``None`` while unrecorded);
    ``claim`` is filled by the after-accept hook (the charge flow, issue 8).
    """

    outcome: str
    reason: str | None
    uid: str | None
    counter: int | None
    card_id: str | None
    host: str | None
    apdus: int
    ms: float
    url: str | None = field(default=None, repr=False)  # p/c: a spendable tap
    recorded: str = "no"  # no | spooled | delivered | conflict | blocked | rejected
    detail: str | None = None  # precise verifier reason, for the operator's log
    key: str | None = None
    claim: Any | None = None
    # False: a foreign card (no keys of ours) let through for a charge with
    # ``accept_foreign_cards``; the issuer is its only verifier, its counter is unknown.
    verified: bool = True

    @property
    def accepted(self) -> bool:
        return self.outcome == ACCEPTED

    def log_fields(self) -> dict[str, Any]:
        """The fields of the one log line per tap: no keys, no p/c, a shortened UID."""
        return {
            "card": short_id(self.card_id) or short_uid(self.uid),
            "counter": self.counter,
            "outcome": self.outcome,
            "reason": self.reason,
            "ms": round(self.ms, 2),
            "apdus": self.apdus,
            "recorded": self.recorded,
            **({} if self.verified else {"verified": False}),
        }


def short_id(card_id: str | None) -> str | None:
    """The first 8 hex digits of the Bolt Card ID: enough to find the card, short in a log."""
    return None if not card_id else card_id[:8]


def short_uid(uid: str | None) -> str | None:
    if uid is None:
        return None
    return uid if len(uid) <= 8 else f"{uid[:4]}…{uid[-2:]}"
