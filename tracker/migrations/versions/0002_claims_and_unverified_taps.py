"""Claims (LNURL-withdraw charges a station made) with their state history, and unverified
taps (a foreign card charged without keys: no counter compare-and-set).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    # A plain ADD COLUMN (SQLite supports it with a constant default): batch mode would copy
    # the table and drop the tap_daily_count triggers of 0001.
    op.add_column(
        'tap', sa.Column('verified', sa.Boolean(), nullable=False, server_default=sa.true())
    )

    op.create_table('claim',
    sa.Column('id', BIGID, nullable=False),
    sa.Column('claim_id', sa.String(length=32), nullable=False),
    sa.Column('station_pk', BIGID, nullable=False),
    sa.Column('tap_pk', BIGID, nullable=False),
    sa.Column('payout_pk', BIGID, nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('amount_msat', sa.BigInteger(), nullable=False),
    sa.Column('memo', sa.String(length=200), nullable=True),
    sa.Column('bolt11', sa.Text(), nullable=True),
    sa.Column('payment_hash', sa.String(length=64), nullable=True),
    sa.Column('issuer_host', sa.String(length=255), nullable=False),
    sa.Column('k1_hash', sa.String(length=64), nullable=True),
    sa.Column('reason', sa.String(length=1000), nullable=True),
    sa.Column('station_time', UTC_TIME, nullable=False),
    sa.Column('created', UTC_TIME, nullable=False),
    sa.Column('updated', UTC_TIME, nullable=False),
    sa.ForeignKeyConstraint(['station_pk'], ['station.id'], name=op.f('fk_claim_station_pk_station')),
    sa.ForeignKeyConstraint(['tap_pk'], ['tap.id'], name=op.f('fk_claim_tap_pk_tap')),
    sa.ForeignKeyConstraint(['payout_pk'], ['payout.id'], name=op.f('fk_claim_payout_pk_payout')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_claim')),
    sa.UniqueConstraint('claim_id', name=op.f('uq_claim_claim_id'))
    )
    with op.batch_alter_table('claim', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_claim_payout_pk'), ['payout_pk'], unique=False)
        batch_op.create_index(batch_op.f('ix_claim_tap_pk'), ['tap_pk'], unique=False)

    op.create_table('claim_state_change',
    sa.Column('id', BIGID, nullable=False),
    sa.Column('claim_pk', BIGID, nullable=False),
    sa.Column('from_state', sa.String(length=16), nullable=True),
    sa.Column('to_state', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=1000), nullable=True),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('changed_at', UTC_TIME, nullable=False),
    sa.ForeignKeyConstraint(['claim_pk'], ['claim.id'], name=op.f('fk_claim_state_change_claim_pk_claim')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_claim_state_change'))
    )
    with op.batch_alter_table('claim_state_change', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_claim_state_change_claim_pk'), ['claim_pk'], unique=False)


def downgrade() -> None:
    op.drop_table('claim_state_change')
    op.drop_table('claim')
    with op.batch_alter_table('tap', schema=None) as batch_op:
        batch_op.drop_column('verified')
