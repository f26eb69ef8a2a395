"""The latest heartbeat of each station; when each issuer was last reconciled (issue 12).

``station_heartbeat``: one row per station, replaced by every heartbeat (the stations page
and ``/metrics`` show health now, not a history). ``issuer.last_reconciled``: the end of the
last successful reconcile pass, from which ``/metrics`` reports the reconcile lag; it lives
in the database because every tracker process runs the loop and any of them may be scraped.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 20:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table('station_heartbeat',
    sa.Column('station_pk', BIGID, nullable=False),
    sa.Column('received_at', UTC_TIME, nullable=False),
    sa.Column('version', sa.String(length=40), nullable=False),
    sa.Column('started_at', UTC_TIME, nullable=False),
    sa.Column('uptime_s', sa.Integer(), nullable=False),
    sa.Column('period_s', sa.Float(), nullable=False),
    sa.Column('outbox_pending', sa.Integer(), nullable=False),
    sa.Column('outbox_dead', sa.Integer(), nullable=False),
    sa.Column('readers_present', sa.Integer(), nullable=False),
    sa.Column('readers_total', sa.Integer(), nullable=False),
    sa.Column('problem', sa.String(length=300), nullable=True),
    sa.ForeignKeyConstraint(['station_pk'], ['station.id'],
                            name=op.f('fk_station_heartbeat_station_pk_station')),
    sa.PrimaryKeyConstraint('station_pk', name=op.f('pk_station_heartbeat'))
    )
    op.add_column('issuer', sa.Column('last_reconciled', UTC_TIME, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('issuer', schema=None) as batch_op:
        batch_op.drop_column('last_reconciled')
    op.drop_table('station_heartbeat')
