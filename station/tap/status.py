"""Card status from the tracker, cached for the pipeline.

:class:`StatusCache` answers the pipeline's "is this card blocked?" from the tracker, trusted
for ``ttl`` seconds. :class:`ForgetOnTurnDown` is the uplink the forwarder sends through: when
the tracker turns a tap down (409, 403) it forgets that card's cached status on the way back,
so the next tap asks again — without the forwarder knowing a cache exists, and without anything
calling back upstream.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from threading import Lock

from station.uplink.base import (
    BLOCKED,
    CONFLICT,
    CardStatus,
    Delivery,
    Heartbeat,
    Uplink,
    UplinkUnavailable,
)
from station.uplink.records import Record, TapRecord


class StatusCache:
    """A lookup that fails (tracker down) returns the last known status, however old, or
    ``None``; ``skip_fetch`` lets the caller avoid the network while it knows it is offline."""

    def __init__(
        self,
        fetch: Callable[[str], CardStatus],
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[str, tuple[float, CardStatus]] = {}
        self._lock = Lock()

    def get(self, uid: str, *, skip_fetch: bool = False) -> CardStatus | None:
        now = self._clock()
        with self._lock:
            hit = self._entries.get(uid)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        if skip_fetch:
            return hit[1] if hit else None
        try:
            status = self._fetch(uid)
        except UplinkUnavailable:
            return hit[1] if hit else None
        with self._lock:
            self._entries[uid] = (now, status)
        return status

    def forget(self, uid: str) -> None:
        with self._lock:
            self._entries.pop(uid, None)

class ForgetOnTurnDown:
    """An uplink that forgets a card's cached status when the tracker turns its tap down."""

    def __init__(self, uplink: Uplink, cache: StatusCache) -> None:
        self._uplink = uplink
        self._cache = cache

    def send(self, record: Record) -> Delivery:
        delivery = self._uplink.send(record)
        if isinstance(record, TapRecord) and delivery.state in (CONFLICT, BLOCKED):
            self._cache.forget(record.card_uid)
        return delivery

    def send_batch(self, records: Sequence[TapRecord]) -> list[Delivery]:
        deliveries = self._uplink.send_batch(records)
        for record, delivery in zip(records, deliveries, strict=False):
            if delivery.state in (CONFLICT, BLOCKED):
                self._cache.forget(record.card_uid)
        return deliveries

    def card_status(self, uid: str) -> CardStatus:
        return self._uplink.card_status(uid)

    def send_heartbeat(self, beat: Heartbeat) -> None:
        self._uplink.send_heartbeat(beat)

    def close(self) -> None:
        self._uplink.close()
