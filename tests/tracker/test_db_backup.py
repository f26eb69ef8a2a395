"""``tracker db backup FILE``: an online SQLite copy taken while a station keeps writing,
opened as a tracker database and restored the documented way; on PostgreSQL, the pg_dump
line to run (without the password) and nothing else."""

from __future__ import annotations

import gc
import os
import secrets
import shutil
import sqlite3
import stat
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from tracker_testlib import make_station, make_tap

from tracker import migrations
from tracker.cli import main
from tracker.db import make_engine
from tracker.settings import load_settings
from tracker.web.app import create_app

UID = "04A1B2C3D4E5F6"


def _accepted_taps_seen_by_a_tracker_on(url: str) -> int:
    """Start a tracker on ``url`` (as TRACKER_DATABASE_URL) and read its tap count."""
    token = secrets.token_hex(16)
    settings = load_settings(
        env={"TRACKER_DATABASE_URL": url, "TRACKER_METRICS_TOKEN": token}, persist_secret=False
    )
    app = create_app(settings)  # refuses a database that is not at the Alembic head
    try:
        with TestClient(app) as client:
            answer = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    finally:
        app.state.engine.dispose()
    assert answer.status_code == 200
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            if sample.name == "tracker_taps_total" and sample.labels["outcome"] == "accepted":
                return int(sample.value)
    raise AssertionError("no tracker_taps_total{outcome=accepted}")


def _target(fd: Path) -> str:
    try:
        return os.readlink(fd)
    except OSError:
        return ""


def _rows(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def test_backup_while_a_station_writes_then_restore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "tracker.sqlite"
    url = f"sqlite:///{db}"
    engine = make_engine(url)
    migrations.upgrade(engine)
    station = make_station(engine, "till-1")
    settings = load_settings(env={}, database_url=url, secret_key="s" * 40, persist_secret=False)
    app = create_app(settings, engine=engine)
    stored: list[int] = []
    stop = threading.Event()

    def station_writes() -> None:
        with TestClient(app) as client:
            counter = 0
            while not stop.is_set():
                counter += 1
                body = make_tap(UID, counter)
                if client.post("/api/v1/taps", json=body, headers=station.headers).is_success:
                    stored.append(counter)

    writer = threading.Thread(target=station_writes)
    writer.start()
    try:
        while len(stored) < 20:
            stop.wait(0.01)
        before = len(stored)
        backup = tmp_path / "backups" / "tracker-backup.sqlite"
        backup.parent.mkdir()
        assert main(["--database-url", url, "db", "backup", str(backup)]) == 0
        after_backup = len(stored)
        while len(stored) < after_backup + 10:  # the station was never held up
            stop.wait(0.01)
    finally:
        stop.set()
        writer.join()
    out, _ = capsys.readouterr()
    assert str(backup) in out and "restore" in out
    assert stat.S_IMODE(os.stat(backup).st_mode) == 0o600
    assert list(backup.parent.iterdir()) == [backup]  # no temp file, no -wal left behind
    in_backup = _rows(backup, "tap")
    assert before <= in_backup <= after_backup
    assert _rows(backup, "station") == 1
    assert _accepted_taps_seen_by_a_tracker_on(f"sqlite:///{backup}") == in_backup

    # an existing FILE is refused unless --force
    mtime = backup.stat().st_mtime_ns
    assert main(["--database-url", url, "db", "backup", str(backup)]) == 1
    assert "--force" in capsys.readouterr().err
    assert backup.stat().st_mtime_ns == mtime and _rows(backup, "tap") == in_backup
    assert main(["--database-url", url, "db", "backup", str(backup), "--force"]) == 0
    assert _rows(backup, "tap") == len(stored)  # the writer has stopped: everything
    assert stat.S_IMODE(os.stat(backup).st_mode) == 0o600

    # taps after the backup, then the restore as documented: stop the tracker, copy the
    # backup over the database file, start it - the later taps are gone, the rest is back
    with TestClient(app) as client:
        for counter in range(len(stored) + 1, len(stored) + 4):
            body = make_tap(UID, counter)
            assert client.post("/api/v1/taps", json=body, headers=station.headers).is_success
    assert _rows(db, "tap") == len(stored) + 3
    engine.dispose()  # "stop the tracker": no connection of this process stays open
    gc.collect()  # (sessions dropped by finished test-client threads close on collection)
    assert not [
        f
        for f in Path("/proc/self/fd").iterdir()
        if _target(f).endswith(("tracker.sqlite", "-wal", "-shm"))
    ]
    shutil.copyfile(backup, db)
    for extra in (tmp_path / "tracker.sqlite-wal", tmp_path / "tracker.sqlite-shm"):
        extra.unlink(missing_ok=True)
    assert _accepted_taps_seen_by_a_tracker_on(url) == len(stored)


def test_backup_refuses_a_missing_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'nothing.sqlite'}"
    assert main(["--database-url", url, "db", "backup", str(tmp_path / "b.sqlite")]) == 1
    assert "no database at" in capsys.readouterr().err
    assert not (tmp_path / "b.sqlite").exists() and not (tmp_path / "nothing.sqlite").exists()


def test_backup_on_postgresql_prints_pg_dump_without_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the settings keep a secret key in ./var
    url = "postgresql://shop:pa55-word@127.0.0.1:5432/tracker_shop"
    target = tmp_path / "dump.pgc"
    assert main(["--database-url", url, "db", "backup", str(target)]) == 0
    out, err = capsys.readouterr()
    assert "pa55-word" not in out + err
    line = next(x.strip() for x in out.splitlines() if x.strip().startswith("pg_dump "))
    assert line == (
        f"pg_dump --format=custom --file={target} --host=127.0.0.1 --port=5432 "
        "--username=shop tracker_shop"
    )
    assert not target.exists()
