"""The station daemon: APDUs per tap, tap latency, sustained taps/s, memory over many taps.

    python -m bench station          # BENCH_QUICK=1 for a smaller run

Rows:

1. APDUs per accepted tap through pcscd + vpcd (must be 3);
2. tap latency from "card present" (the reader's ``wait_for_card`` returned a connected card)
   to "tap recorded" through pcscd + vpcd with the emulated NTAG 424 DNA: read (3 APDUs), key
   store lookup + SUN verification, policy, outbox commit with fsync — target median <= 15 ms;
3. the same, to "recorded in the tracker database" (DirectUplink, waiting for its verdict),
   and to "recorded by the tracker over HTTP" (HttpUplink → uvicorn on 127.0.0.1);
4. taps/s sustained by one daemon (reader thread + pipeline + outbox + forwarder into a tracker
   SQLite database) with the in-process emulated reader, so the reader stack is not the limit;
5. the daemon's RSS after 100 taps and after 10,000 (2,000 with BENCH_QUICK).
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import latency_row, quick, rss_kib

REPO = Path(__file__).resolve().parent.parent
ISSUER = bytes.fromhex("00112233445566778899aabbccddeeff")
UID = bytes.fromhex("04BE0C4A7E51D0")
VPCD_SLOT = "Virtual PCD 00 00"


def _card(tmp: Path, uid: bytes = UID) -> Any:
    from station.cli.demo_run import load_or_provision

    return load_or_provision(tmp / f"{uid.hex()}.json", uid, ISSUER, "lnurlw://pay.example.com/ln")


def _tracker_db(tmp: Path) -> str:
    from tracker import migrations
    from tracker.db import make_engine

    url = f"sqlite:///{tmp / 'tracker.sqlite'}"
    engine = make_engine(url)
    migrations.upgrade(engine)
    engine.dispose()
    return url


def _pipeline(tmp: Path, uplink: Any, confirm: float, name: str) -> tuple[Any, Any, Any]:
    from station.outbox.forwarder import Forwarder
    from station.outbox.outbox import Outbox
    from station.settings import KeySettings, Secret
    from station.tap.pipeline import TapPipeline
    from station.tap.verifier import build_verifier

    outbox = Outbox(tmp / f"{name}.sqlite", station_name=name)
    forwarder = Forwarder(outbox, uplink)
    pipe = TapPipeline(verifier=build_verifier(KeySettings(issuer_key=Secret(ISSUER.hex()))),
                       station_name=name, memory=outbox, outbox=outbox, verdicts=forwarder,
                       confirm_timeout=confirm)
    forwarder.start()
    return pipe, outbox, forwarder


def _live_tracker(tmp: Path) -> Any:
    """A real tracker on loopback (the tests' LiveTracker), for the HTTP case."""
    sys.path.insert(0, str(REPO / "tests"))
    try:
        import tracker_live
    finally:
        sys.path.pop(0)
    tmp.mkdir(parents=True, exist_ok=True)
    return tracker_live.LiveTracker(tmp)


def _pcsc_rows(tmp: Path, n: int) -> list[dict[str, Any]]:
    sys.path.insert(0, str(REPO / "tests"))
    try:
        import pcscd_harness
    finally:
        sys.path.pop(0)
    why = pcscd_harness.unavailable_reason()
    if why:
        return [{"case": "tap through pcscd+vpcd", "detail": f"skipped: {why}"}]
    from station.emulator.bridges.vpcd import VpcdBridge
    from station.readers.pcsc import PcscReader, list_reader_names
    from station.uplink.direct import DirectUplink
    from station.uplink.null import NullUplink

    daemon = pcscd_harness.Pcscd()
    daemon.start()
    rows: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 10
        names: list[str] = []
        while not names and time.monotonic() < deadline:
            names = [x for x in list_reader_names() if VPCD_SLOT in x]
            time.sleep(0.05)
        # The card stays in the field between iterations; a short poll slice keeps
        # wait_for_card from blocking for a state change that never comes (not timed anyway).
        reader = PcscReader(names[0], poll_slice=0.005)
        bridge = VpcdBridge(_card(tmp))
        bridge.insert()
        db_url = _tracker_db(tmp)
        import contextlib

        import httpx

        from station.uplink.http import HttpUplink

        live = _live_tracker(tmp / "http-tracker")
        token = live.add_station("bench-http")
        live.start()
        base = live.url
        stack = contextlib.ExitStack()
        stack.callback(live.close)
        cases = (
            ("tap present -> recorded (outbox fsync), pcscd+vpcd", NullUplink(), 0.0),
            ("tap present -> in tracker db (direct), pcscd+vpcd",
             DirectUplink(db_url, "bench-pcsc"), 5.0),
            ("tap present -> in tracker via HTTP (uvicorn), pcscd+vpcd",
             HttpUplink(httpx.Client(base_url=base, timeout=5.0), token), 5.0),
        )
        for case, uplink, confirm in cases:
            pipe, outbox, forwarder = _pipeline(tmp, uplink, confirm, f"pcsc{len(rows)}")
            samples: list[float] = []
            apdus: set[int] = set()
            outcomes: set[str] = set()
            for i in range(n + 10):
                link = reader.wait_for_card(5.0)
                if link is None:
                    raise RuntimeError("the vpcd card vanished")
                t0 = time.perf_counter()
                result = pipe.process(link)
                elapsed = time.perf_counter() - t0
                link.close()
                if i >= 10:  # warm-up
                    samples.append(elapsed)
                    apdus.add(result.apdus)
                    outcomes.add(f"{result.outcome}/{result.recorded}")
            forwarder.stop()
            outbox.close()
            uplink.close()
            row = latency_row(case, samples, f"target median <= 15 ms; {sorted(outcomes)}")
            row["ok"] = row["p50_ms"] <= 15.0
            rows.append(row)
            if not any(r["case"] == "APDUs per tap (pcscd+vpcd)" for r in rows):
                rows.insert(0, {"case": "APDUs per tap (pcscd+vpcd)", "value": max(apdus),
                                "unit": "APDUs", "ok": apdus == {3}, "detail": "must be 3"})
        bridge.close()
        reader.close()
        stack.close()
    finally:
        daemon.close()
    return rows


def _daemon_rows(tmp: Path, n_taps: int, direct: bool = True) -> list[dict[str, Any]]:
    """One real Daemon (reader thread, pipeline, outbox, forwarder) fed by a presenter thread.

    ``direct``: the forwarder writes every tap into a tracker SQLite database (the tracker's
    own ``record_tap``) while taps come in; otherwise no tracker is configured and the figure
    is the station's own ceiling (read, verify, decide, fsync'd spool)."""
    from station.app import build_station
    from station.daemon import ReaderSlot
    from station.readers.emulated import EmulatedReader
    from station.settings import KeySettings, Secret, StationSettings, TrackerLink

    class HandshakeReader(EmulatedReader):
        """Tells the presenter when the daemon saw the field empty (a hand is never faster)."""

        def __init__(self) -> None:
            super().__init__()
            self.emptied = threading.Event()

        def wait_for_removal(self, timeout: float) -> bool:
            gone = super().wait_for_removal(timeout)
            if gone:
                self.emptied.set()
            return gone

    db_url = _tracker_db(tmp) if direct else None
    reader = HandshakeReader()
    card = _card(tmp, bytes.fromhex("04BE0C4A7E51D1" if direct else "04BE0C4A7E51D2"))
    done = threading.Semaphore(0)
    settings = StationSettings(
        station_name="bench", outbox_path=tmp / f"daemon-{direct}.sqlite", debounce=0,
        confirm_timeout=0, keys=KeySettings(issuer_key=Secret(ISSUER.hex())),
        tracker=TrackerLink(database_url=db_url),
    )
    station = build_station(settings, slots=[ReaderSlot("emulated", open=lambda: reader)],
                            on_tap=lambda r: done.release(), poll=0.05)
    station.forwarder.start()
    station.daemon.start()

    def taps(count: int) -> None:
        for _ in range(count):
            reader.present(card)
            if not done.acquire(timeout=10):
                raise RuntimeError("the daemon stopped taking taps")
            reader.remove()
            if not reader.emptied.wait(10):
                raise RuntimeError("the daemon did not notice the removal")
            reader.emptied.clear()

    rows: list[dict[str, Any]] = []
    try:
        if not direct:
            taps(50)
            t0 = time.perf_counter()
            taps(n_taps)
            elapsed = time.perf_counter() - t0
            rows.append({"case": "taps/s sustained by one daemon (emulated reader, spool only)",
                         "value": round(n_taps / elapsed, 1), "unit": "taps/s",
                         "detail": f"{n_taps} taps, no tracker: read+verify+fsync'd outbox"})
            return rows
        taps(100)
        station.forwarder.flush(60)
        rss_100 = rss_kib()
        t0 = time.perf_counter()
        taps(n_taps - 100)
        elapsed = time.perf_counter() - t0
        flushed = station.forwarder.flush(120)
        t_all = time.perf_counter() - t0
        rss_n = rss_kib()
        rows.append({"case": "taps/s sustained by one daemon (emulated reader, direct db)",
                     "value": round((n_taps - 100) / elapsed, 1), "unit": "taps/s",
                     "detail": f"{n_taps - 100} taps; all in tracker db after "
                               f"{t_all:.1f} s: {flushed}"})
        rows.append({"case": f"daemon RSS after 100 vs {n_taps} taps",
                     "value": round(rss_n / 1024, 1), "unit": "MiB",
                     "ok": rss_n - rss_100 < 20 * 1024,
                     "detail": f"{rss_100 / 1024:.1f} MiB after 100 taps; growth "
                               f"{(rss_n - rss_100) / 1024:.1f} MiB (flat = < 20 MiB)"})
        counts = station.outbox.counts()
        rows.append({"case": "daemon taps recorded", "value": sum(counts.values()),
                     "unit": "records", "detail": str(counts)})
    finally:
        station.shutdown(flush_timeout=5)
    return rows


def run() -> list[dict[str, Any]]:
    n_lat, n_taps = (100, 2_000) if quick() else (500, 10_000)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-station-") as tmp:
        try:
            rows.extend(_pcsc_rows(Path(tmp), n_lat))
        except Exception as exc:  # a broken reader stack must not hide the daemon figures
            rows.append({"case": "tap through pcscd+vpcd", "detail": f"failed: {exc!r}"})
        rows.extend(_daemon_rows(Path(tmp), n_taps // 2, direct=False))
        rows.extend(_daemon_rows(Path(tmp), n_taps))
    return rows
