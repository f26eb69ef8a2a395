"""Revocable operator sessions, login attempts kept in the database, disabled users.

``operator_session``: one row per signed-in browser (only the SHA-256 of its random id is
stored); logout, a password or role change, disabling and removing a user delete rows, and
every request and open event stream checks its row, in every tracker process.
``login_attempt``: one row per sign-in attempt, counted before the password is checked, so
the limit holds across processes and restarts and cannot be evicted from memory.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column(
        'user_account',
        sa.Column('disabled', sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_table('operator_session',
    sa.Column('id', BIGID, nullable=False),
    sa.Column('sid_hash', sa.String(length=64), nullable=False),
    sa.Column('user_pk', BIGID, nullable=False),
    sa.Column('created', UTC_TIME, nullable=False),
    sa.Column('expires', UTC_TIME, nullable=False),
    sa.ForeignKeyConstraint(['user_pk'], ['user_account.id'],
                            name=op.f('fk_operator_session_user_pk_user_account'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_operator_session')),
    sa.UniqueConstraint('sid_hash', name=op.f('uq_operator_session_sid_hash'))
    )
    with op.batch_alter_table('operator_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_operator_session_user_pk'), ['user_pk'])
    op.create_table('login_attempt',
    sa.Column('id', BIGID, nullable=False),
    sa.Column('username', sa.String(length=200), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=False),
    sa.Column('at', UTC_TIME, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_attempt'))
    )
    with op.batch_alter_table('login_attempt', schema=None) as batch_op:
        batch_op.create_index('ix_login_attempt_username_at', ['username', 'at'])
        batch_op.create_index('ix_login_attempt_address_at', ['address', 'at'])
        batch_op.create_index('ix_login_attempt_at', ['at'])


def downgrade() -> None:
    op.drop_table('login_attempt')
    op.drop_table('operator_session')
    with op.batch_alter_table('user_account', schema=None) as batch_op:
        batch_op.drop_column('disabled')
