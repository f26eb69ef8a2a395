"""A covering index for payouts per card and state; queued webhook deliveries (issue 9).

The dashboard's top cards (completed amount per card for a period) joined card -> payout and
fetched every payout row; with 200,000 payouts that took a second on SQLite. SQLite now sums
per card from ``ix_payout_card_state_created`` in card order; PostgreSQL (no skip scan) from
``ix_payout_state_created``, which gains ``card_pk`` as its last column.

``webhook_delivery.pending``: a delivery acknowledged during a burst before its payout was
fetched; a partial index keeps finding them cheap however many deliveries are done.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 20:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index('ix_payout_state_created', table_name='payout')
    op.create_index(
        'ix_payout_state_created', 'payout',
        ['state', 'created', 'id', 'amount_msat', 'card_pk'], unique=False,
    )
    op.create_index(
        'ix_payout_card_state_created',
        'payout',
        ['card_pk', 'state', 'created', 'amount_msat'],
        unique=False,
    )
    op.add_column(
        'webhook_delivery',
        sa.Column('pending', sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_index(
        'ix_webhook_delivery_pending', 'webhook_delivery', ['id'], unique=False,
        sqlite_where=sa.text('pending'), postgresql_where=sa.text('pending'),
    )


def downgrade() -> None:
    op.drop_index('ix_webhook_delivery_pending', table_name='webhook_delivery')
    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.drop_column('pending')
    op.drop_index('ix_payout_card_state_created', table_name='payout')
    op.drop_index('ix_payout_state_created', table_name='payout')
    op.create_index(
        'ix_payout_state_created', 'payout', ['state', 'created', 'id', 'amount_msat'],
        unique=False,
    )
