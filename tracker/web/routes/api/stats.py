"""The dashboard summary as JSON."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter

from tracker.db import SessionDep
from tracker.models import Stats
from tracker.services import stats as stats_service
from tracker.web.deps import ViewerDep

router = APIRouter(prefix="/api/v1", tags=["stats"])


@router.get("/stats", response_model=Stats, summary="Dashboard summary")
def get_stats(
    session: SessionDep,
    _user: ViewerDep,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Stats:
    """Payouts by state and amount for the period; active cards; taps today / in period."""
    return stats_service.dashboard_stats(session, since=since, until=until)
