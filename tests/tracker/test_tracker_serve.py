"""`tracker serve` as operators run it: a real process, one or several workers."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from procs import tracker_process
from tracker_testlib import count_rows, make_station, make_tap

from tracker import migrations
from tracker.db import make_engine


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_answers_and_stops_cleanly(tmp_path: Path, workers: int) -> None:
    url = f"sqlite:///{tmp_path / 'tracker.sqlite'}"
    engine = make_engine(url)
    migrations.upgrade(engine)
    station = make_station(engine, "till-1")
    codes: list[int] = []
    try:
        with tracker_process(url, "s" * 40, "--workers", str(workers), exit_codes=codes) as base:
            # Several connections, so with two workers both get some of them.
            for counter in range(1, 13):
                with httpx.Client(base_url=base, timeout=10) as http:
                    answer = http.post(
                        "/api/v1/taps", json=make_tap(counter=counter), headers=station.headers
                    )
                    assert answer.status_code == 201, answer.text
            assert count_rows(engine, "tap") == 12
    finally:
        engine.dispose()
    code = codes[0]
    # uvicorn re-raises SIGTERM after its graceful shutdown (systemd counts that as clean).
    assert code in (0, -signal.SIGTERM)


def test_two_workers_on_one_sqlite_file_store_each_tap_of_two_racing_stations_once(
    tmp_path: Path,
) -> None:
    """Two stations send the same taps at once to `tracker serve --workers 2` on SQLite (each
    worker groups the taps of a turn of its loop into one commit, and the two share the file's
    write lock): every card's counters are stored exactly once, one station gets 201 and the
    other 409 for each, and every card ends at its last counter."""
    url = f"sqlite:///{tmp_path / 'tracker.sqlite'}"
    engine = make_engine(url)
    migrations.upgrade(engine)
    stations = [make_station(engine, "till-1"), make_station(engine, "till-2")]
    cards = [f"04E1{n:010X}" for n in range(20)]
    counters = range(1, 11)
    answers: list[int] = []

    async def one_card(http: httpx.AsyncClient, headers: dict[str, str], uid: str) -> None:
        for counter in counters:  # a card's taps in order, as a reader sees them
            answer = await http.post("/api/v1/taps", json=make_tap(uid, counter), headers=headers)
            answers.append(answer.status_code)

    async def both(base: str) -> None:
        clients = [httpx.AsyncClient(base_url=base, timeout=20) for _ in stations]
        try:
            await asyncio.gather(*(one_card(http, s.headers, uid)
                                   for http, s in zip(clients, stations, strict=True)
                                   for uid in cards))
        finally:
            for http in clients:
                await http.aclose()

    try:
        with tracker_process(url, "s" * 40, "--workers", "2") as base:
            asyncio.run(both(base))
        taps = len(cards) * len(counters)
        assert sorted(answers) == [201] * taps + [409] * taps
        assert count_rows(engine, "tap") == taps
        assert count_rows(engine, "card", "last_counter = 10") == len(cards)
        with engine.connect() as conn:
            doubled = conn.execute(sa.text(
                "SELECT COUNT(*) FROM (SELECT card_pk, counter FROM tap"
                " GROUP BY card_pk, counter HAVING COUNT(*) > 1) d")).scalar_one()
        assert doubled == 0
    finally:
        engine.dispose()
