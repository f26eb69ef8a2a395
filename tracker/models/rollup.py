"""Payout rollups kept by database triggers on ``payout`` (migration 0011). Part of
:mod:`tracker.models` (re-exported there).

Why: the all-time dashboard summed every payout row three times (totals by state, the volume
chart, the top cards): ~30 ms each on PostgreSQL at 200,000 payouts. These tables hold a few
rows per day and per card instead. Triggers (not application code) keep them exact whoever
writes payouts, and move a payout between groups when a webhook or a poll changes its state
or amount. Read by :mod:`tracker.services.stats`.
"""

from datetime import date

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from tracker.models import BigId


class PayoutDaily(SQLModel, table=True):
    """Payouts and their amount per UTC day of ``payout.created`` and state."""

    __tablename__ = "payout_daily"

    day: date = Field(primary_key=True)
    state: str = Field(primary_key=True, max_length=32)
    payouts: int = Field(default=0, sa_type=sa.BigInteger)
    amount_msat: int = Field(default=0, sa_type=sa.BigInteger)


class PayoutCardTotal(SQLModel, table=True):
    """All-time payouts and amount per card and state (payouts without a card are left out).

    No day here: with as many cards as a busy tracker has, (day, card) groups hold barely
    more than one payout each, so they would save nothing over the payout index."""

    __tablename__ = "payout_card_total"

    card_pk: int = Field(primary_key=True, sa_type=BigId)
    state: str = Field(primary_key=True, max_length=32)
    payouts: int = Field(default=0, sa_type=sa.BigInteger)
    amount_msat: int = Field(default=0, sa_type=sa.BigInteger)
