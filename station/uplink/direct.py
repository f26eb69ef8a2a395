"""Records straight into the tracker's database (station and tracker on one machine).

The only module of ``station`` that imports ``tracker``. It calls the tracker's own service
functions, so the counter compare-and-set and the blocked-card rule are exactly the ones the
HTTP API applies. ``tracker`` is imported here, at first use of this module, and nowhere else:
a station without the tracker installed never loads it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

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
        database = tracker_db.Database(self._engine)
        self._session_factory = database.sessions
        # The tracker's one way to record taps (its short path, its set-based batches).
        self._recorder = taps.TapRecorder(database)

    def close(self) -> None:
        self._recorder.close()
        self._engine.dispose()

    def send(self, record: Record) -> Delivery:
        if isinstance(record, ClaimRecord):
            return self._send_claim(record)
        try:
            tap = TapCreate(**record.to_body())
        except ValidationError as exc:  # what the API answers 422: the record is dead
            return Delivery(REJECTED, detail=_reasons(exc), status=422)
        try:
            _public, created = self._recorder.record(tap, station_name=self.station_name)
            return Delivery(DELIVERED, created=bool(created))
        except taps.TapRefused as refusal:
            return _refused(refusal)
        except _DATABASE_DOWN as exc:
            raise _unavailable(exc) from None

    def send_batch(self, records: Sequence[TapRecord]) -> list[Delivery]:
        """The taps in order through :meth:`TapRecorder.record_many` (runs of the common case
        stored set-based, one transaction a run); a record the API would refuse (422) is dead
        on its own. Stops at the first tap the database cannot take, so the ones before it
        are settled; raises :class:`UplinkUnavailable` when not even the first one was."""
        done: list[Delivery] = []
        try:
            station_id = self._station_id()
            run: list[TapCreate] = []
            for record in records:
                try:
                    run.append(TapCreate(**record.to_body()))
                    continue
                except ValidationError as exc:
                    dead = Delivery(REJECTED, detail=_reasons(exc), status=422)
                for delivery in self._record_run(run, station_id):
                    done.append(delivery)
                run = []
                done.append(dead)
            for delivery in self._record_run(run, station_id):
                done.append(delivery)
        except _DATABASE_DOWN as exc:
            if done:
                return done  # settled so far; the forwarder sends the rest later
            raise _unavailable(exc) from None
        return done

    def _record_run(self, run: list[TapCreate], station_id: int) -> Iterator[Delivery]:
        """Each tap's delivery as its run commits (a database error ends the iteration)."""
        if not run:
            return
        for answer in self._recorder.record_many(
            run, station_name=self.station_name, station_id=station_id
        ):
            if isinstance(answer, taps.TapRefused):
                yield _refused(answer)
            else:
                yield Delivery(DELIVERED, created=bool(answer[1]))

    def _station_id(self) -> int:
        with self._session_factory() as session:
            station_id = stations.get_or_create_station_id(session, name=self.station_name)
            session.commit()
        return station_id

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
        except _DATABASE_DOWN as exc:
            raise _unavailable(exc) from None

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
        except _DATABASE_DOWN as exc:
            raise _unavailable(exc) from None

    def card_status(self, uid: str) -> CardStatus:
        try:
            with self._engine.connect() as conn:
                row = conn.execute(
                    text("SELECT status, last_counter FROM card WHERE uid = :uid"),
                    {"uid": uid.upper()},
                ).fetchone()
        except OperationalError as exc:
            raise _unavailable(exc) from None
        if row is None:
            return CardStatus("unknown", None)
        status = getattr(row[0], "value", row[0])
        return CardStatus(str(status), None if row[1] is None else int(row[1]))


#: What the tracker's database raises when it cannot take a write now (retry later).
_DATABASE_DOWN = (OperationalError, tracker_db.DatabaseBusy)


def _unavailable(exc: Exception) -> UplinkUnavailable:
    if isinstance(exc, tracker_db.DatabaseBusy):
        return UplinkUnavailable("the tracker database is busy (write lock held)")
    return UplinkUnavailable(f"tracker database unavailable: {getattr(exc, 'orig', exc)!s}"[:200])


def _refused(refusal: taps.TapRefused) -> Delivery:
    if isinstance(refusal, taps.CardBlocked):
        return Delivery(BLOCKED, detail="card_blocked")
    last = refusal.last_counter if isinstance(refusal, taps.CounterConflict) else None
    return Delivery(CONFLICT, last_counter=last, detail="counter_not_increasing")


def _reasons(exc: ValidationError) -> str:
    """Field paths and messages, without the refused input itself."""
    parts = [f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]]
    return "; ".join(parts)[:300]
