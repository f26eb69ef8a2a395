"""Create the tracker schema: cards, stations, taps, payouts and their history, users.

Indexes follow the dashboard queries: newest-first lists (time, id) overall and per card,
station, state and outcome, so keyset pagination walks an index instead of sorting.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 10:29:15.783534
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# 64-bit ids on PostgreSQL; INTEGER PRIMARY KEY (rowid alias, auto-increment) on SQLite.
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


# tap_daily_count is maintained by triggers on tap (see tracker.models.TapDailyCount).
_SQLITE_TRIGGERS = [
    """CREATE TRIGGER tap_daily_count_insert AFTER INSERT ON tap BEGIN
        INSERT INTO tap_daily_count (day, station_pk, outcome, taps)
        VALUES (date(NEW.received_at), NEW.station_pk, NEW.outcome, 1)
        ON CONFLICT (day, station_pk, outcome) DO UPDATE SET taps = taps + 1;
    END""",
    """CREATE TRIGGER tap_daily_count_delete AFTER DELETE ON tap BEGIN
        UPDATE tap_daily_count SET taps = taps - 1
        WHERE day = date(OLD.received_at) AND station_pk = OLD.station_pk
          AND outcome = OLD.outcome;
    END""",
    """CREATE TRIGGER tap_daily_count_update AFTER UPDATE OF received_at, station_pk, outcome
    ON tap BEGIN
        UPDATE tap_daily_count SET taps = taps - 1
        WHERE day = date(OLD.received_at) AND station_pk = OLD.station_pk
          AND outcome = OLD.outcome;
        INSERT INTO tap_daily_count (day, station_pk, outcome, taps)
        VALUES (date(NEW.received_at), NEW.station_pk, NEW.outcome, 1)
        ON CONFLICT (day, station_pk, outcome) DO UPDATE SET taps = taps + 1;
    END""",
]
_PG_TRIGGERS = [
    """CREATE FUNCTION tap_daily_count_apply() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('DELETE', 'UPDATE') THEN
            UPDATE tap_daily_count SET taps = taps - 1
            WHERE day = (OLD.received_at AT TIME ZONE 'UTC')::date
              AND station_pk = OLD.station_pk AND outcome = OLD.outcome;
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            INSERT INTO tap_daily_count (day, station_pk, outcome, taps)
            VALUES ((NEW.received_at AT TIME ZONE 'UTC')::date, NEW.station_pk, NEW.outcome, 1)
            ON CONFLICT (day, station_pk, outcome)
            DO UPDATE SET taps = tap_daily_count.taps + 1;
        END IF;
        RETURN NULL;
    END
    $$""",
    """CREATE TRIGGER tap_daily_count_trg
    AFTER INSERT OR DELETE OR UPDATE OF received_at, station_pk, outcome ON tap
    FOR EACH ROW EXECUTE FUNCTION tap_daily_count_apply()""",
]


def upgrade() -> None:
    op.create_table('card',
    sa.Column('alias', sa.String(length=100), nullable=True),
    sa.Column('notes', sa.String(length=2000), nullable=True),
    sa.Column('id', BIGID, nullable=False),
    sa.Column('uid', sa.String(length=20), nullable=False),
    sa.Column('card_id', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('last_counter', sa.Integer(), nullable=True),
    sa.Column('first_seen', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_card')),
    sa.UniqueConstraint('uid', name=op.f('uq_card_uid'))
    )
    with op.batch_alter_table('card', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_card_card_id'), ['card_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_card_last_seen'), ['last_seen'], unique=False)
        batch_op.create_index(batch_op.f('ix_card_status'), ['status'], unique=False)

    op.create_table('station',
    sa.Column('id', BIGID, nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=True),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_station')),
    sa.UniqueConstraint('name', name=op.f('uq_station_name')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_station_token_hash'))
    )
    op.create_table('user_account',
    sa.Column('id', BIGID, nullable=False),
    sa.Column('username', sa.String(length=100), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_account')),
    sa.UniqueConstraint('username', name=op.f('uq_user_account_username'))
    )
    op.create_table('tap',
    sa.Column('id', BIGID, nullable=False),
    sa.Column('card_pk', BIGID, nullable=False),
    sa.Column('station_pk', BIGID, nullable=False),
    sa.Column('counter', sa.Integer(), nullable=False),
    sa.Column('station_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=True),
    sa.Column('issuer_host', sa.String(length=255), nullable=True),
    sa.Column('idempotency_key', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['card_pk'], ['card.id'], name=op.f('fk_tap_card_pk_card')),
    sa.ForeignKeyConstraint(['station_pk'], ['station.id'], name=op.f('fk_tap_station_pk_station')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tap')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_tap_idempotency_key'))
    )
    with op.batch_alter_table('tap', schema=None) as batch_op:
        batch_op.create_index('ix_tap_card_received', ['card_pk', 'received_at', 'id'], unique=False)
        batch_op.create_index('ix_tap_outcome_received', ['outcome', 'received_at', 'id'], unique=False)
        batch_op.create_index('ix_tap_received', ['received_at', 'id'], unique=False)
        batch_op.create_index('ix_tap_station_received', ['station_pk', 'received_at', 'id'], unique=False)

    op.create_table('tap_daily_count',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('station_pk', BIGID, nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('taps', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('day', 'station_pk', 'outcome', name=op.f('pk_tap_daily_count'))
    )
    for statement in (
        _PG_TRIGGERS if op.get_bind().dialect.name == "postgresql" else _SQLITE_TRIGGERS
    ):
        op.execute(statement)

    op.create_table('payout',
    sa.Column('id', BIGID, nullable=False),
    sa.Column('tap_pk', BIGID, nullable=True),
    sa.Column('card_pk', BIGID, nullable=True),
    sa.Column('station_pk', BIGID, nullable=True),
    sa.Column('idempotency_key', sa.String(length=200), nullable=True),
    sa.Column('amount_msat', sa.BigInteger(), nullable=False),
    sa.Column('bolt11', sa.Text(), nullable=True),
    sa.Column('payment_hash', sa.String(length=64), nullable=True),
    sa.Column('issuer_host', sa.String(length=255), nullable=True),
    sa.Column('lnurl_k1', sa.String(length=500), nullable=True),
    sa.Column('issuer_reason', sa.String(length=1000), nullable=True),
    sa.Column('state', sa.String(length=32), nullable=False),
    sa.Column('issuer_payout_id', sa.String(length=100), nullable=True),
    sa.Column('pull_payment_id', sa.String(length=100), nullable=True),
    sa.Column('proof', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=True),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['card_pk'], ['card.id'], name=op.f('fk_payout_card_pk_card')),
    sa.ForeignKeyConstraint(['station_pk'], ['station.id'], name=op.f('fk_payout_station_pk_station')),
    sa.ForeignKeyConstraint(['tap_pk'], ['tap.id'], name=op.f('fk_payout_tap_pk_tap')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payout')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_payout_idempotency_key'))
    )
    with op.batch_alter_table('payout', schema=None) as batch_op:
        batch_op.create_index('ix_payout_card_created', ['card_pk', 'created', 'id'], unique=False)
        batch_op.create_index('ix_payout_created', ['created', 'id'], unique=False)
        batch_op.create_index(
            'ix_payout_created_state_amount', ['created', 'state', 'amount_msat'], unique=False
        )
        batch_op.create_index(batch_op.f('ix_payout_issuer_payout_id'), ['issuer_payout_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_payout_payment_hash'), ['payment_hash'], unique=False)
        batch_op.create_index(
            'ix_payout_state_created', ['state', 'created', 'id', 'amount_msat'], unique=False
        )
        batch_op.create_index('ix_payout_station_created', ['station_pk', 'created', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_payout_tap_pk'), ['tap_pk'], unique=False)

    op.create_table('payout_state_change',
    sa.Column('id', BIGID, nullable=False),
    sa.Column('payout_pk', BIGID, nullable=False),
    sa.Column('from_state', sa.String(length=32), nullable=True),
    sa.Column('to_state', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.String(length=1000), nullable=True),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['payout_pk'], ['payout.id'], name=op.f('fk_payout_state_change_payout_pk_payout')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payout_state_change'))
    )
    with op.batch_alter_table('payout_state_change', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payout_state_change_payout_pk'), ['payout_pk'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('payout_state_change', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payout_state_change_payout_pk'))

    op.drop_table('payout_state_change')
    with op.batch_alter_table('payout', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payout_tap_pk'))
        batch_op.drop_index('ix_payout_station_created')
        batch_op.drop_index('ix_payout_state_created')
        batch_op.drop_index(batch_op.f('ix_payout_payment_hash'))
        batch_op.drop_index(batch_op.f('ix_payout_issuer_payout_id'))
        batch_op.drop_index('ix_payout_created_state_amount')
        batch_op.drop_index('ix_payout_created')
        batch_op.drop_index('ix_payout_card_created')

    op.drop_table('payout')
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS tap_daily_count_trg ON tap")
        op.execute("DROP FUNCTION IF EXISTS tap_daily_count_apply()")
    else:
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS tap_daily_count_{name}")
    op.drop_table('tap_daily_count')
    with op.batch_alter_table('tap', schema=None) as batch_op:
        batch_op.drop_index('ix_tap_station_received')
        batch_op.drop_index('ix_tap_received')
        batch_op.drop_index('ix_tap_outcome_received')
        batch_op.drop_index('ix_tap_card_received')

    op.drop_table('tap')
    op.drop_table('user_account')
    op.drop_table('station')
    with op.batch_alter_table('card', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_card_status'))
        batch_op.drop_index(batch_op.f('ix_card_last_seen'))
        batch_op.drop_index(batch_op.f('ix_card_card_id'))

    op.drop_table('card')
