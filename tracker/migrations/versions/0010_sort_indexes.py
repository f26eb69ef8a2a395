"""Indexes behind the sortable list columns (issue 12): taps by counter, payouts by amount.

Why: a sorted page is a keyset page (``WHERE (key, id) < cursor ORDER BY key, id LIMIT n``);
with an index on ``(key, id)`` it reads ~50 index entries whatever the table's size, without
one it sorts every tap (a million on a busy tracker) for each page. The other sortable
columns already have theirs (see tracker/services/sorting.py).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 20:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_tap_counter', 'tap', ['counter', 'id'])
    op.create_index('ix_payout_amount', 'payout', ['amount_msat', 'id'])


def downgrade() -> None:
    op.drop_index('ix_payout_amount', table_name='payout')
    op.drop_index('ix_tap_counter', table_name='tap')
