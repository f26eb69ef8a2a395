"""The real tracker app on SQLite, served by uvicorn on 127.0.0.1, stoppable and
restartable on the same port so tests can take it down for a stretch of taps."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SECRET_KEY = "x" * 32  # what a ``tracker`` CLI run against the same database must be given


class LiveTracker:
    def __init__(self, tmp: Path, **settings: Any) -> None:
        """``settings``: overrides of the tracker's settings (``reconcile_seconds=0`` …)."""
        from tracker import migrations
        from tracker.db import make_engine
        from tracker.settings import load_settings

        self.db_path = tmp / "tracker.sqlite"
        self.database_url = f"sqlite:///{self.db_path}"
        self.settings = load_settings(env={}, database_url=self.database_url,
                                      secret_key=SECRET_KEY, persist_secret=False, **settings)
        self.engine = make_engine(self.settings)
        migrations.upgrade(self.engine)
        self.port = free_port()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_station(self, name: str) -> str:
        from tracker.db import make_sessionmaker
        from tracker.services import stations

        with make_sessionmaker(self.engine)() as session:
            _station, token = stations.create_station(session, name=name)
        return token

    def start(self) -> None:
        from tracker.web.app import create_app

        app = create_app(self.settings, engine=self.engine)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("tracker did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            assert self._thread is not None
            self._thread.join(15)
            self._server = None

    def taps(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT t.idempotency_key, c.uid, t.counter, t.outcome, t.reason, "
                "s.name AS station "
                "FROM tap t JOIN card c ON c.id = t.card_pk JOIN station s ON s.id = t.station_pk "
                "ORDER BY t.id"
            )).mappings().all()
        return [dict(r) for r in rows]

    def close(self) -> None:
        self.stop()
        self.engine.dispose()
