"""Operator time zones; card holder and who blocked a card, when and why (issue 12).

Plain ADD COLUMNs (no batch mode): batch would copy tables and SQLite would lose nothing
here, but it keeps the migration cheap on a large card table.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column('user_account', sa.Column('timezone', sa.String(length=64), nullable=True))
    op.add_column('card', sa.Column('holder', sa.String(length=100), nullable=True))
    op.add_column('card', sa.Column('blocked_reason', sa.String(length=500), nullable=True))
    op.add_column('card', sa.Column('blocked_by', sa.String(length=100), nullable=True))
    op.add_column('card', sa.Column('blocked_at', UTC_TIME, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('card', schema=None) as batch_op:
        batch_op.drop_column('blocked_at')
        batch_op.drop_column('blocked_by')
        batch_op.drop_column('blocked_reason')
        batch_op.drop_column('holder')
    with op.batch_alter_table('user_account', schema=None) as batch_op:
        batch_op.drop_column('timezone')
