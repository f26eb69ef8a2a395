"""No tracker configured: records stay in the outbox (``station run`` warns about it)."""

from __future__ import annotations

from collections.abc import Sequence

from station.uplink.base import CardStatus, Delivery, Heartbeat, UplinkUnavailable
from station.uplink.records import Record, TapRecord


class NullUplink:
    def send(self, record: Record) -> Delivery:
        raise UplinkUnavailable("no tracker configured")

    def send_batch(self, records: Sequence[TapRecord]) -> list[Delivery]:
        raise UplinkUnavailable("no tracker configured")

    def card_status(self, uid: str) -> CardStatus:
        raise UplinkUnavailable("no tracker configured")

    def send_heartbeat(self, beat: Heartbeat) -> None:
        raise UplinkUnavailable("no tracker configured")

    def close(self) -> None:
        pass
