"""The records a station sends the tracker, one dataclass per kind, as the API wants them.

``tap`` goes to ``POST /api/v1/taps``; ``claim`` to ``POST /api/v1/claims``. Each record carries
the idempotency key under which the outbox spools it: a tap's is also in its body (the tracker
deduplicates on it); a claim is deduplicated by ``claim_id``, so its key only tells the outbox
one state change from the next (every change is a new record with a fresh key, sent in order).
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Final, Literal

TAP: Final = "tap"
CLAIM: Final = "claim"
KINDS: Final = (TAP, CLAIM)

ClaimState = Literal["sending", "claimed", "pending", "refused", "unknown", "paid", "expired"]
CLAIM_STATES: Final = ("sending", "claimed", "pending", "refused", "unknown", "paid", "expired")
FINAL_CLAIM_STATES: Final = ("paid", "refused", "expired")


@dataclass(frozen=True)
class TapRecord:
    """One tap as the tracker's ingest API wants it (``POST /api/v1/taps`` body).

    ``verified=False`` marks a foreign card charged with no keys held: UID from the reader,
    counter 0; the tracker applies no counter check to it.
    """

    idempotency_key: str
    card_uid: str
    card_id: str | None
    counter: int
    station_time: str
    outcome: str
    reason: str | None
    issuer_host: str | None
    verified: bool = True

    kind: ClassVar[str] = TAP

    def to_body(self) -> dict[str, Any]:
        return asdict(self)


def _claim_key() -> str:
    return f"claim:{uuid.uuid4().hex}"


@dataclass(frozen=True)
class ClaimRecord:
    """One state of one LNURL-withdraw claim (``POST /api/v1/claims`` body, see CONTRACT.md).

    Never holds k1 itself, only its SHA-256 (``k1_hash``).
    """

    claim_id: str
    tap_key: str
    state: ClaimState
    amount_msat: int
    memo: str | None
    bolt11: str | None
    payment_hash: str | None
    issuer_host: str
    k1_hash: str | None
    reason: str | None
    station_time: str
    idempotency_key: str = field(default_factory=_claim_key)

    kind: ClassVar[str] = CLAIM

    def to_body(self) -> dict[str, Any]:
        body = asdict(self)
        body.pop("idempotency_key")
        return body


Record = TapRecord | ClaimRecord


def stored_fields(record: Record) -> dict[str, Any]:
    """Everything the outbox keeps of a record (body and key; the kind is a column)."""
    return asdict(record)


def from_stored(kind: str, data: dict[str, Any]) -> Record:
    """The record the outbox stored; unknown fields (a newer station's) are ignored."""
    if kind not in KINDS:
        raise ValueError(f"unknown outbox record kind {kind!r}")
    cls: type[TapRecord] | type[ClaimRecord] = TapRecord if kind == TAP else ClaimRecord
    names = {f.name for f in fields(cls) if f.init}
    return cls(**{k: v for k, v in data.items() if k in names})
