"""The audit log of operator actions (issue 12).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 20:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'audit_event',
        sa.Column('id', BIG_ID, nullable=False),
        sa.Column('at', UTC_TIME, nullable=False),
        sa.Column('actor', sa.String(length=120), nullable=False),
        sa.Column('actor_kind', sa.String(length=16), nullable=False),
        sa.Column('action', sa.String(length=48), nullable=False),
        sa.Column('target_type', sa.String(length=32), nullable=True),
        sa.Column('target_id', sa.String(length=200), nullable=True),
        sa.Column('detail', sa.String(length=500), nullable=True),
        sa.Column('address', sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_event')),
    )
    op.create_index('ix_audit_event_at', 'audit_event', ['at', 'id'])
    op.create_index('ix_audit_event_actor_at', 'audit_event', ['actor', 'at', 'id'])
    op.create_index('ix_audit_event_action_at', 'audit_event', ['action', 'at', 'id'])


def downgrade() -> None:
    op.drop_index('ix_audit_event_action_at', table_name='audit_event')
    op.drop_index('ix_audit_event_actor_at', table_name='audit_event')
    op.drop_index('ix_audit_event_at', table_name='audit_event')
    op.drop_table('audit_event')
