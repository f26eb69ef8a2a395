"""Issuers (BTCPay stores, secrets encrypted), webhook deliveries, operator API tokens, and the
issuer's own payout record on each payout (issuer, revision, amounts, timestamps).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC_TIME = sa.DateTime(timezone=True)

_PAYOUT_COLUMNS = (
    ('revision', sa.Integer()),
    ('original_amount', sa.String(length=40)),
    ('original_currency', sa.String(length=16)),
    ('payout_amount', sa.String(length=40)),
    ('payout_currency', sa.String(length=16)),
    ('issuer_created', UTC_TIME),
    ('bolt11_digest', sa.String(length=64)),
)


def upgrade() -> None:
    op.create_table('issuer',
    sa.Column('id', BIGID, nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('url', sa.String(length=500), nullable=False),
    sa.Column('store_id', sa.String(length=100), nullable=False),
    sa.Column('api_key_enc', sa.Text(), nullable=False),
    sa.Column('webhook_secret_enc', sa.Text(), nullable=False),
    sa.Column('created', UTC_TIME, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_issuer')),
    sa.UniqueConstraint('name', name=op.f('uq_issuer_name'))
    )
    op.create_table('webhook_delivery',
    sa.Column('id', BIGID, nullable=False),
    sa.Column('issuer_pk', BIGID, nullable=False),
    sa.Column('delivery_id', sa.String(length=100), nullable=False),
    sa.Column('payout_id', sa.String(length=100), nullable=True),
    sa.Column('received_at', UTC_TIME, nullable=False),
    sa.ForeignKeyConstraint(['issuer_pk'], ['issuer.id'], name=op.f('fk_webhook_delivery_issuer_pk_issuer')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_delivery')),
    sa.UniqueConstraint('issuer_pk', 'delivery_id', name='uq_webhook_delivery')
    )
    op.create_table('api_token',
    sa.Column('id', BIGID, nullable=False),
    sa.Column('user_pk', BIGID, nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('created', UTC_TIME, nullable=False),
    sa.Column('revoked', UTC_TIME, nullable=True),
    sa.ForeignKeyConstraint(['user_pk'], ['user_account.id'], name=op.f('fk_api_token_user_pk_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_token')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_api_token_token_hash'))
    )
    op.create_index(op.f('ix_api_token_user_pk'), 'api_token', ['user_pk'], unique=False)
    op.create_index(op.f('ix_api_token_prefix'), 'api_token', ['prefix'], unique=False)
    # payout has no triggers (tap has), so SQLite's batch copy is safe here.
    with op.batch_alter_table('payout', schema=None) as batch_op:
        batch_op.add_column(sa.Column('issuer_pk', BIGID, nullable=True))
        for name, kind in _PAYOUT_COLUMNS:
            batch_op.add_column(sa.Column(name, kind, nullable=True))
        batch_op.create_foreign_key(
            op.f('fk_payout_issuer_pk_issuer'), 'issuer', ['issuer_pk'], ['id'])
        batch_op.create_index(batch_op.f('ix_payout_bolt11_digest'), ['bolt11_digest'])
        # One row per issuer payout (NULLs, the claims not matched yet, do not collide).
        batch_op.create_index(
            'uq_payout_issuer_payout', ['issuer_pk', 'issuer_payout_id'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('payout', schema=None) as batch_op:
        batch_op.drop_index('uq_payout_issuer_payout')
        batch_op.drop_index(batch_op.f('ix_payout_bolt11_digest'))
        batch_op.drop_constraint(op.f('fk_payout_issuer_pk_issuer'), type_='foreignkey')
        for name, _kind in reversed(_PAYOUT_COLUMNS):
            batch_op.drop_column(name)
        batch_op.drop_column('issuer_pk')
    op.drop_index(op.f('ix_api_token_prefix'), table_name='api_token')
    op.drop_index(op.f('ix_api_token_user_pk'), table_name='api_token')
    op.drop_table('api_token')
    op.drop_table('webhook_delivery')
    op.drop_table('issuer')
