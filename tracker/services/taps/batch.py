"""Many tap reports in one request (a station catching up after an outage).

Each report gets exactly the answer ``POST /api/v1/taps`` would give it, posted in order, so
a batch changes nothing about exactly-once: 201 stored, 200 already stored, 409, 403, 422,
and one report's refusal never affects another's. How: :meth:`TapRecorder.record_many` stores
runs of the common case set-based, one transaction per run, and the rest one by one.

If the database stops answering part-way (SQLite's write lock held elsewhere, a lost
connection), the answers so far (all stored) are returned with ``complete=False``; the station
sends the rest again. If it fails on the first report, the error propagates (the route answers
503 like the single route).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from tracker.models import TapCreate
from tracker.services.taps.record import CardBlocked, CounterConflict, TapRefused
from tracker.services.taps.recorder import TapRecorder

log = logging.getLogger("tracker.taps")

#: Most reports in one batch (about 150 kB of JSON: well under the body limit).
MAX_BATCH = 500


@dataclass
class BatchAnswer:
    """One answer per report for a prefix of the batch (all of it when ``complete``)."""

    results: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = True


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """The 422 detail of the single route: field, reason, type — never the input itself."""
    return [
        {
            "field": ".".join(str(p) for p in err.get("loc", ()) if p != "body"),
            "reason": err.get("msg", "invalid"),
            "type": err.get("type", "value_error"),
        }
        for err in exc.errors()
    ]


def record_batch(
    recorder: TapRecorder, reports: list[Any], *, station_name: str, station_id: int
) -> BatchAnswer:
    """Record ``reports`` in order in the calling thread (see the module docstring)."""
    answer = BatchAnswer()
    checked: list[TapCreate | dict[str, Any]] = [_checked(report) for report in reports]
    taps = [tap for tap in checked if isinstance(tap, TapCreate)]
    outcomes = recorder.record_many(taps, station_name=station_name, station_id=station_id)
    for tap in checked:
        if not isinstance(tap, TapCreate):
            answer.results.append(tap)
            continue
        try:
            outcome = next(outcomes)
        except Exception:
            if not answer.results:
                raise
            log.warning("batch from %s stopped after %d reports; the station sends the rest "
                        "again", station_name, len(answer.results), exc_info=True)
            answer.complete = False
            break
        if isinstance(outcome, CounterConflict):
            answer.results.append(_refused(409, {"reason": "counter_not_increasing",
                                                 "last_counter": outcome.last_counter}))
        elif isinstance(outcome, CardBlocked):
            answer.results.append(_refused(403, {"reason": "card_blocked"}))
        elif isinstance(outcome, TapRefused):
            raise TypeError(f"unexpected refusal {outcome!r}")  # a new kind needs its answer
        else:
            tap_id, created = outcome
            answer.results.append(
                {"status": 201 if created else 200, "created": created, "tap_id": tap_id}
            )
    return answer


def _checked(report: Any) -> TapCreate | dict[str, Any]:
    """The report as a tap, or its 422 answer (the single route's field reasons)."""
    if not isinstance(report, dict):
        return _refused(422, [{"field": "", "reason": "not an object", "type": "dict_type"}])
    try:
        return TapCreate.model_validate(report)
    except ValidationError as exc:
        return _refused(422, field_errors(exc))


def _refused(status: int, detail: Any) -> dict[str, Any]:
    return {"status": status, "created": False, "detail": detail}
