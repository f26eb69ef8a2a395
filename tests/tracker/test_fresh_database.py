"""``tracker serve`` (and any tracker command) on a database that is not there yet, as a real
process in an empty working directory: it names the database and the command to run, exits
non-zero, and leaves nothing behind (no empty database file, no secret in the directory)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from tracker_server import free_port

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
POSTGRES_ONLY = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)


def _tracker(cwd: Path, *args: str, db_url: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m tracker ARGS`` in ``cwd`` with HOME there too and no secret key set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "XDG_"))}
    env["HOME"] = str(cwd / "home")
    if db_url is not None:
        env["TRACKER_DATABASE_URL"] = db_url
    return subprocess.run(
        [sys.executable, "-m", "tracker", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@SQLITE_ONLY
def test_serve_without_a_database_names_the_file_and_creates_nothing(
    tmp_path: Path, db_url: str
) -> None:
    answer = _tracker(tmp_path, "serve", "--port", str(free_port()))
    assert answer.returncode == 1, answer.stderr
    line = answer.stderr.strip()
    assert "var/tracker.sqlite" in line  # the default file, as the operator would look for it
    assert "`tracker db upgrade`" in line
    assert _files(tmp_path) == set()  # no var/, no tracker.sqlite, no tracker.secret


@SQLITE_ONLY
def test_other_commands_refuse_a_missing_file_too(tmp_path: Path, db_url: str) -> None:
    target = tmp_path / "shop" / "tracker.sqlite"
    answer = _tracker(tmp_path, "stations", "add", "till-1", db_url=f"sqlite:///{target}")
    assert answer.returncode == 1
    assert str(target) in answer.stderr and "`tracker db upgrade`" in answer.stderr
    assert _files(tmp_path) == set()


@SQLITE_ONLY
def test_serve_on_an_empty_sqlite_file_says_which_file(tmp_path: Path, db_url: str) -> None:
    target = tmp_path / "empty.sqlite"
    sqlite3.connect(target).close()  # a file with no tables (someone's touch, a failed copy)
    answer = _tracker(tmp_path, "serve", "--port", str(free_port()), db_url=f"sqlite:///{target}")
    assert answer.returncode == 1
    assert f"the tracker database {target} is empty" in answer.stderr
    assert "`tracker db upgrade`" in answer.stderr


@SQLITE_ONLY
def test_db_upgrade_creates_it_and_serve_is_then_refused_no_more(
    tmp_path: Path, db_url: str
) -> None:
    assert _tracker(tmp_path, "db", "upgrade").returncode == 0
    assert (tmp_path / "var" / "tracker.sqlite").exists()
    # The next command keeps its generated secret key next to the database, nowhere else.
    assert _tracker(tmp_path, "stations", "add", "till-1").returncode == 0
    assert (tmp_path / "var" / "tracker.secret").exists()
    assert not (tmp_path / "home").exists()


@POSTGRES_ONLY
def test_serve_on_an_empty_postgres_database_names_it_without_the_password(
    tmp_path: Path, db_url: str
) -> None:
    # Trust authentication ignores the password, so it can be any text: it must not be shown.
    with_password = sa.make_url(db_url).set(password="hunter2-secret")
    url = with_password.render_as_string(hide_password=False)
    answer = _tracker(tmp_path, "serve", "--port", str(free_port()), db_url=url)
    assert answer.returncode == 1
    assert "hunter2-secret" not in answer.stderr + answer.stdout
    database = sa.make_url(db_url).database
    assert f"/{database} is empty" in answer.stderr and "`tracker db upgrade`" in answer.stderr
    assert {f for f in _files(tmp_path) if not f.startswith("home")} == set()  # nothing in cwd


@POSTGRES_ONLY
def test_postgres_commands_keep_the_secret_key_out_of_the_working_directory(
    tmp_path: Path, db_url: str
) -> None:
    assert _tracker(tmp_path, "db", "upgrade", db_url=db_url).returncode == 0
    first = _tracker(tmp_path, "issuers", "list", db_url=db_url)
    assert first.returncode == 0, first.stderr
    assert not (tmp_path / "var").exists()
    kept = list((tmp_path / "home" / ".local" / "state" / "boltcard-tracker").glob("*.secret"))
    assert len(kept) == 1 and kept[0].stat().st_mode & 0o077 == 0
    key = kept[0].read_text()
    # Started from another directory, the same user's commands find the same key.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env_home = tmp_path / "home"
    (elsewhere / "home").symlink_to(env_home)
    assert _tracker(elsewhere, "issuers", "list", db_url=db_url).returncode == 0
    assert [p.read_text() for p in env_home.rglob("*.secret")] == [key]
