"""Records straight into the tracker's database (station and tracker on one machine).

The only module of ``station`` that imports ``tracker``. It calls the tracker's own service
functions, so the counter compare-and-set and the blocked-card rule are exactly the ones the
HTTP API applies. ``tracker`` is imported here, at first use of this module, and nowhere else:
a station without the tracker installed never loads it.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from station.uplink.base import (
    BLOCKED,
    CONFLICT,
    DELIVERED,
    REJECTED,
    CardStatus,
    Delivery,
    Heartbeat,
    UplinkUnavailable,
)
from station.uplink.records import ClaimRecord, Record, TapRecord
from tracker import db as tracker_db
from tracker.models import ClaimCreate, HeartbeatCreate, TapCreate
from tracker.services import claims, station_health, stations, taps


class DirectUplink:
    """The tracker's services on its database, without HTTP."""

    def __init__(self, database_url: str, station_name: str) -> None:
        self.station_name = station_name
        self._engine = tracker_db.make_engine(database_url)
        self._session_factory = tracker_db.make_sessionmaker(self._engine)

    def close(self) -> None:
        self._engine.dispose()

    def send(self, record: Record) -> Delivery:
        if isinstance(record, ClaimRecord):
            return self._send_claim(record)
        try:
            tap = TapCreate(**record.to_body())
        except ValidationError as exc:  # what the API answers 422: the record is dead
            return Delivery(REJECTED, detail=_reasons(exc), status=422)
        try:
            with self._session_factory() as session:
                _public, created = taps.record_tap(
                    session, station_name=self.station_name, tap=tap
                )
                return Delivery(DELIVERED, created=bool(created))
        except taps.CounterConflict as exc:
            return Delivery(CONFLICT, last_counter=exc.last_counter,
                            detail="counter_not_increasing")
        except taps.CardBlocked:
            return Delivery(BLOCKED, detail="card_blocked")
        except OperationalError as exc:
            raise UplinkUnavailable(f"tracker database unavailable: {exc.orig!s}"[:200]) from None
        except tracker_db.DatabaseBusy:
            raise UplinkUnavailable("the tracker database is busy (write lock held)") from None

    def send_batch(self, records: Sequence[TapRecord]) -> list[Delivery]:
        """Taps one by one through the same services (no request to save here); stops at the
        first one the database cannot take, so the ones before it are settled."""
        done: list[Delivery] = []
        for record in records:
            try:
                done.append(self.send(record))
            except UplinkUnavailable:
                if not done:
                    raise
                break
        return done

    def _send_claim(self, record: ClaimRecord) -> Delivery:
        try:
            claim = ClaimCreate(**record.to_body())
        except ValidationError as exc:
            return Delivery(REJECTED, detail=_reasons(exc), status=422)
        try:
            with self._session_factory() as session:
                station_id = stations.get_or_create_station_id(session, name=self.station_name)
                _public, created = claims.record_claim(session, station_id=station_id,
                                                       claim=claim)
                return Delivery(DELIVERED, created=bool(created))
        except claims.ClaimRejected as exc:
            return Delivery(REJECTED, detail=f"{exc.field}: {exc}"[:300], status=422)
        except OperationalError as exc:
            raise UplinkUnavailable(f"tracker database unavailable: {exc.orig!s}"[:200]) from None
        except tracker_db.DatabaseBusy:
            raise UplinkUnavailable("the tracker database is busy (write lock held)") from None

    def send_heartbeat(self, beat: Heartbeat) -> None:
        """Store the heartbeat through the tracker's own service (same checks as the API)."""
        try:
            body = HeartbeatCreate(**beat.to_body())
        except ValidationError as exc:
            raise UplinkUnavailable(f"the tracker refuses this heartbeat: {_reasons(exc)}"
                                    ) from None
        try:
            with self._session_factory() as session:
                station_id = stations.get_or_create_station_id(session, name=self.station_name)
                station_health.record_heartbeat(session, station_id=station_id, beat=body)
        except OperationalError as exc:
            raise UplinkUnavailable(f"tracker database unavailable: {exc.orig!s}"[:200]) from None
        except tracker_db.DatabaseBusy:
            raise UplinkUnavailable("the tracker database is busy (write lock held)") from None

    def card_status(self, uid: str) -> CardStatus:
        try:
            with self._engine.connect() as conn:
                row = conn.execute(
                    text("SELECT status, last_counter FROM card WHERE uid = :uid"),
                    {"uid": uid.upper()},
                ).fetchone()
        except OperationalError as exc:
            raise UplinkUnavailable(f"tracker database unavailable: {exc.orig!s}"[:200]) from None
        if row is None:
            return CardStatus("unknown", None)
        status = getattr(row[0], "value", row[0])
        return CardStatus(str(status), None if row[1] is None else int(row[1]))


def _reasons(exc: ValidationError) -> str:
    """Field paths and messages, without the refused input itself."""
    parts = [f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]]
    return "; ".join(parts)[:300]
