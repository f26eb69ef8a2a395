"""Alembic migrations, configured in code so they work from an installed package.

There is no ``alembic.ini`` to find: :func:`alembic_config` points Alembic at this directory
and at the database URL it is given. The CLI (`tracker db upgrade|downgrade|current`), the tests
and the app's start-up check all go through the helpers here.

SQLite cannot ALTER most things, so ``env.py`` turns on Alembic's batch mode there (copy the
table, move the rows, swap); on PostgreSQL the same operations run as plain ALTERs.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from tracker.settings import normalise_database_url

MIGRATIONS_DIR = Path(__file__).resolve().parent


def alembic_config(database_url: str | None = None, *, engine: Engine | None = None) -> Config:
    """An Alembic ``Config`` for this package; pass a URL or an engine to run against."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if database_url is not None:
        # ConfigParser interpolation: a literal % in a password must be doubled.
        config.set_main_option(
            "sqlalchemy.url", normalise_database_url(database_url).replace("%", "%%")
        )
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(engine=engine), revision)


def downgrade(engine: Engine, revision: str = "-1") -> None:
    command.downgrade(alembic_config(engine=engine), revision)
