"""Dashboard summary numbers, computed in a handful of indexed aggregate queries.

Period semantics: ``since`` inclusive, ``until`` exclusive, applied to the payout's ``created``
and the tap's ``received_at``. "Taps today" starts at midnight in the operator's zone,
whatever the period.

Whole UTC days are read from the trigger-kept rollups (``tap_daily_count``, ``payout_daily``,
``payout_card_total``), only the partial days at a period's ends from the raw tables (see
:func:`split_days`), so the cost does not grow with the length of the period.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlmodel import Session, col

from tracker.models import (
    FAILED_STATES,
    PENDING_STATES,
    Card,
    CardStatus,
    Payout,
    PayoutCardTotal,
    PayoutDaily,
    PayoutState,
    Station,
    Stats,
    Tap,
    TapDailyCount,
    utcnow,
)
from tracker.services.filters import as_utc


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


class DaySplit(NamedTuple):
    """A period ``[since, until)`` cut for a daily rollup: whole UTC days ``first_day <= day <
    end_day`` (None: unbounded; ``days`` False: none at all) read from the rollup, and at
    most two partial days (``edges``, UTC ranges) read from the raw table.

    The cut is exact whatever the period's start: "today" starts at the operator's local
    midnight and "7 days" at this moment a week ago; neither is a UTC midnight, and both
    become an edge range of under a day plus whole UTC days."""

    edges: tuple[tuple[datetime, datetime], ...]
    first_day: date | None
    end_day: date | None
    days: bool


def split_days(since: datetime | None, until: datetime | None) -> DaySplit:
    since, until = as_utc(since), as_utc(until)
    if since is not None and until is not None and until <= since:
        return DaySplit((), None, None, days=False)
    edges: list[tuple[datetime, datetime]] = []
    first_day: date | None = None
    if since is not None:
        first_day = since.date()
        if since != _midnight(first_day):
            first_day += timedelta(days=1)
            head_end = _midnight(first_day)
            if until is not None and until <= head_end:
                return DaySplit(((since, until),), None, None, days=False)  # within one day
            edges.append((since, head_end))
    end_day: date | None = None
    if until is not None:
        end_day = until.date()
        if until != _midnight(end_day):
            edges.append((_midnight(end_day), until))
    days = first_day is None or end_day is None or first_day < end_day
    return DaySplit(tuple(edges), first_day, end_day, days)


def _day_range(column: Any, split: DaySplit) -> list[Any]:
    conditions = []
    if split.first_day is not None:
        conditions.append(column >= split.first_day)
    if split.end_day is not None:
        conditions.append(column < split.end_day)
    return conditions


def count_taps(
    session: Session, *, since: datetime | None = None, until: datetime | None = None
) -> int:
    """Exact number of taps received in ``[since, until)``.

    Whole UTC days come from ``tap_daily_count`` (a few rows per day); only the partial days
    at either end are counted in ``tap`` (an index range of at most two days), so the cost no
    longer grows with the length of the period.
    """
    split = split_days(since, until)
    total = 0
    for start, end in split.edges:
        total += int(
            session.execute(
                sa.select(sa.func.count())
                .select_from(Tap)
                .where(*_period(col(Tap.received_at), start, end))
            ).scalar_one()
        )
    if split.days:
        total += int(
            session.execute(
                sa.select(sa.func.coalesce(sa.func.sum(col(TapDailyCount.taps)), 0)).where(
                    *_day_range(col(TapDailyCount.day), split)
                )
            ).scalar_one()
        )
    return total


def payouts_by_state(
    session: Session, *, since: datetime | None = None, until: datetime | None = None
) -> dict[str, tuple[int, int]]:
    """``{state: (payouts, amount_msat)}`` of the payouts created in ``[since, until)``.

    Whole UTC days from ``payout_daily`` (a few rows per day), the partial days at either end
    from ``payout`` (an index range under a day each)."""
    split = split_days(since, until)
    counts: dict[str, tuple[int, int]] = {}

    def add(rows: Any) -> None:
        for state, n, msat in rows:
            before = counts.get(str(state), (0, 0))
            counts[str(state)] = (before[0] + int(n), before[1] + int(msat))

    for start, end in split.edges:
        add(session.execute(
            sa.select(col(Payout.state), sa.func.count(),
                      sa.func.coalesce(sa.func.sum(col(Payout.amount_msat)), 0))
            .where(*_period(col(Payout.created), start, end))
            .group_by(col(Payout.state))
        ).all())
    if split.days:
        add(session.execute(
            sa.select(col(PayoutDaily.state), sa.func.sum(col(PayoutDaily.payouts)),
                      sa.func.sum(col(PayoutDaily.amount_msat)))
            .where(*_day_range(col(PayoutDaily.day), split))
            .group_by(col(PayoutDaily.state))
        ).all())
    return {state: n_msat for state, n_msat in counts.items() if n_msat[0]}


def _period(column: Any, since: datetime | None, until: datetime | None) -> list[Any]:
    conditions = []
    if since is not None:
        conditions.append(column >= as_utc(since))
    if until is not None:
        conditions.append(column < as_utc(until))
    return conditions


def dashboard_stats(
    session: Session,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
    zone: tzinfo = UTC,
) -> Stats:
    """``taps_today`` counts from midnight in ``zone`` (the operator's day)."""
    now = now or utcnow()
    counts = payouts_by_state(session, since=since, until=until)

    def count(states: tuple[PayoutState, ...]) -> int:
        return sum(counts.get(s.value, (0, 0))[0] for s in states)

    total_msat = sum(msat for _, msat in counts.values())
    completed_msat = counts.get(PayoutState.Completed.value, (0, 0))[1]

    active_cards = session.execute(
        sa.select(sa.func.count())
        .select_from(Card)
        .where(col(Card.status) == CardStatus.active.value)
    ).scalar_one()
    # count_taps reads whole UTC days from tap_daily_count and counts the edges in tap.
    local_day = now.astimezone(zone).date()
    start = datetime.combine(local_day, time.min, tzinfo=zone).astimezone(UTC)
    taps_today = count_taps(session, since=start, until=None)
    taps_in_period = count_taps(session, since=since, until=until)
    return Stats(
        since=as_utc(since),
        until=as_utc(until),
        total_payouts=sum(n for n, _ in counts.values()),
        pending_payouts=count(PENDING_STATES),
        completed_payouts=count((PayoutState.Completed,)),
        failed_payouts=count(FAILED_STATES),
        total_amount_sats=total_msat // 1000,
        completed_amount_sats=completed_msat // 1000,
        pending_amount_sats=sum(counts.get(s.value, (0, 0))[1] for s in PENDING_STATES) // 1000,
        failed_amount_sats=sum(counts.get(s.value, (0, 0))[1] for s in FAILED_STATES) // 1000,
        payouts_by_state={s.value: counts.get(s.value, (0, 0))[0] for s in PayoutState},
        active_cards=int(active_cards),
        taps_today=int(taps_today),
        taps_in_period=int(taps_in_period),
    )


def payout_volume_per_day(
    session: Session, *, since: datetime | None = None, until: datetime | None = None
) -> list[tuple[str, int, int]]:
    """``(YYYY-MM-DD, payouts, completed sats)`` per UTC day with payouts, for the dashboard
    chart: whole days from ``payout_daily``, the partial days at the ends from ``payout``."""
    split = split_days(since, until)
    days: dict[date, tuple[int, int]] = {}
    completed = PayoutState.Completed.value
    for start, end in split.edges:
        paid = sa.case((col(Payout.state) == completed, col(Payout.amount_msat)), else_=0)
        n, msat = session.execute(
            sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(paid), 0))
            .where(*_period(col(Payout.created), start, end))
        ).one()
        if n:
            days[start.date()] = (int(n), int(msat))
    if split.days:
        paid = sa.case(
            (col(PayoutDaily.state) == completed, col(PayoutDaily.amount_msat)), else_=0
        )
        rows = session.execute(
            sa.select(col(PayoutDaily.day), sa.func.sum(col(PayoutDaily.payouts)),
                      sa.func.sum(paid))
            .where(*_day_range(col(PayoutDaily.day), split))
            .group_by(col(PayoutDaily.day))
            .having(sa.func.sum(col(PayoutDaily.payouts)) > 0)
        ).all()
        days.update({day: (int(n), int(msat)) for day, n, msat in rows})
    return [(day.isoformat(), n, msat // 1000) for day, (n, msat) in sorted(days.items())]


def taps_per_station(
    session: Session, *, since: datetime | None = None, until: datetime | None = None
) -> list[tuple[str, int]]:
    """``(station name, taps)``, busiest first, stations without taps left out. Whole UTC
    days from the ``tap_daily_count`` rollup, the partial days at the ends from ``tap``."""
    split = split_days(since, until)
    per_station: dict[int, int] = {}
    parts: list[Any] = [
        sa.select(col(Tap.station_pk), sa.func.count())
        .where(*_period(col(Tap.received_at), start, end))
        .group_by(col(Tap.station_pk))
        for start, end in split.edges
    ]
    if split.days:
        parts.append(
            sa.select(col(TapDailyCount.station_pk), sa.func.sum(col(TapDailyCount.taps)))
            .where(*_day_range(col(TapDailyCount.day), split))
            .group_by(col(TapDailyCount.station_pk))
        )
    for part in parts:
        for station_pk, n in session.execute(part).all():
            per_station[int(station_pk)] = per_station.get(int(station_pk), 0) + int(n)
    busy = [pk for pk, n in per_station.items() if n > 0]
    if not busy:
        return []
    names = session.execute(
        sa.select(col(Station.id), col(Station.name)).where(col(Station.id).in_(busy))
    ).all()
    return sorted(((str(name), per_station[int(pk)]) for pk, name in names),
                  key=lambda row: (-row[1], row[0]))


def top_cards(
    session: Session,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 10,
) -> list[tuple[str, str | None, int]]:
    """``(uid, alias, completed sats)`` of the cards that were paid out the most.

    For all time from ``payout_card_total`` (one row per card and state). For a period,
    summed per card from ``ix_payout_card_state_created`` alone, then only the top rows are
    joined to their cards (joining first made the database visit every payout row); a
    per-day card rollup would not be smaller than that index on a tracker with many cards."""
    completed = PayoutState.Completed.value
    ranked: Any
    if since is None and until is None:
        ranked = (
            sa.select(col(PayoutCardTotal.card_pk).label("card_pk"),
                      col(PayoutCardTotal.amount_msat).label("total"))
            .where(col(PayoutCardTotal.state) == completed, col(PayoutCardTotal.payouts) > 0)
            .order_by(col(PayoutCardTotal.amount_msat).desc())
            .limit(limit)
            .subquery()
        )
    else:
        total = sa.func.sum(col(Payout.amount_msat)).label("total")
        ranked = (
            sa.select(col(Payout.card_pk).label("card_pk"), total)
            .where(
                col(Payout.card_pk).is_not(None),
                col(Payout.state) == completed,
                *_period(col(Payout.created), since, until),
            )
            .group_by(col(Payout.card_pk))
            .order_by(total.desc())
            .limit(limit)
            .subquery()
        )
    rows = session.execute(
        sa.select(col(Card.uid), col(Card.alias), ranked.c.total)
        .join(ranked, ranked.c.card_pk == col(Card.id))
        .order_by(ranked.c.total.desc(), col(Card.uid))
    ).all()
    return [(str(uid), alias, int(msat) // 1000) for uid, alias, msat in rows]
