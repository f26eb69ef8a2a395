"""Migrations up and down on both backends; the app refuses an unmigrated database."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

import tracker.models  # noqa: F401  (tables on the metadata)
from tracker import migrations
from tracker.db import SchemaNotCurrentError, check_schema_current, make_engine
from tracker.settings import load_settings
from tracker.web.app import create_app

TABLES = {
    "card",
    "station",
    "station_heartbeat",
    "tap",
    "tap_daily_count",
    "payout_daily",
    "payout_card_total",
    "payout",
    "payout_state_change",
    "claim",
    "claim_state_change",
    "user_account",
    "issuer",
    "webhook_delivery",
    "api_token",
    "operator_session",
    "login_attempt",
    "audit_event",
}


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}


def test_upgrade_creates_schema_matching_models_and_downgrade_removes_it(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert migrations.current_revision(engine) is None
        migrations.upgrade(engine)
        assert migrations.current_revision(engine) == migrations.head_revision()
        assert _tables(engine) == TABLES
        # The migration and the models describe the same schema (no autogenerate diff).
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, SQLModel.metadata) == []
        check_schema_current(engine)

        migrations.downgrade(engine, "base")
        assert migrations.current_revision(engine) is None
        assert _tables(engine) == set()
        migrations.upgrade(engine)  # and back up again
        assert _tables(engine) == TABLES
    finally:
        engine.dispose()


def test_app_refuses_unmigrated_database_with_instructions(db_url: str) -> None:
    settings = load_settings(env={}, database_url=db_url, secret_key="k" * 32, persist_secret=False)
    engine = make_engine(db_url)
    try:
        with pytest.raises(SchemaNotCurrentError, match="run `tracker db upgrade`"):
            create_app(settings, engine=engine)
    finally:
        engine.dispose()


def test_sqlite_engine_uses_wal_foreign_keys_and_busy_timeout(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/x.sqlite")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
    finally:
        engine.dispose()


def test_foreign_keys_are_enforced(engine: sa.Engine) -> None:
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO tap (card_pk, station_pk, counter, station_time, received_at, "
                "outcome, idempotency_key) VALUES (99, 99, 1, :t, :t, 'accepted', 'k')"
            ),
            {"t": "2026-01-01 00:00:00.000000"},
        )
