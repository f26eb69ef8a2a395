"""Reader stacks: APDU round trips and SUN-URL reads through the real transports.

    python -m bench readers          # BENCH_QUICK=1 for a smaller run

Rows (latencies as p50/p95, p99 in the detail):

1. APDU round trip through pyscard → pcscd → vpcd → our card (``FF CA`` get UID);
2. APDU round trip through nfcpy's ISO-DEP initiator → udp radio → our ISO 14443-4 card;
3. time to read the SUN URL once the card is present (connect/activate + the 3-APDU
   ``read_sun_url`` flow), for pcscd+vpcd, nfcpy udp and the in-process emulated reader,
   with the number of APDUs per read;
4. how long pcscd takes to report a vpcd card inserted — an artefact of vpcd's 400 ms poll,
   not of real readers, shown so nobody mistakes it for tap latency.

pcscd is started with the test harness (tests/pcscd_harness.py) unless one serving vpcd
already runs; rows for a stack that cannot run here say why instead of failing.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import latency_row, quick

REPO = Path(__file__).resolve().parent.parent
UID = bytes.fromhex("04BE0C4A7E5180")
GET_UID = bytes.fromhex("FFCA000000")
VPCD_SLOT = "Virtual PCD 00 01"  # vpcd's second slot: the first one belongs to the e2e tests
VPCD_PORT = 35964


def _skipped(case: str, why: str) -> dict[str, Any]:
    return {"case": case, "detail": f"skipped: {why}"}


def _time(fn: Callable[[], object], count: int) -> list[float]:
    for _ in range(min(20, count)):  # warm-up: first calls pay imports and caches
        fn()
    out = []
    for _ in range(count):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def _bolt_card() -> Any:
    from station.emulator.card import EmulatedCard
    from station.ntag424.flows import drive, provision_bolt_card
    from station.ntag424.keys import derive_keys
    from station.ntag424.ndef import bolt_card_template

    card = EmulatedCard.factory(UID)
    template = bolt_card_template("lnurlw://card.example.com/ln")
    drive(provision_bolt_card(template, derive_keys(bytes(16), UID), os.urandom), card.transceive)
    card.deselect()
    return card


def _sun_read(reader: Any, counter: list[int]) -> Callable[[], object]:
    """One tap's work once the card is present: connect/activate, read the URL, release."""
    from station.ntag424.flows import drive, read_sun_url
    from station.readers.tracing import TracingLink

    def tap() -> object:
        link = reader.wait_for_card(5.0)
        if link is None:
            raise RuntimeError(f"{reader!r}: the card vanished during the benchmark")
        traced = TracingLink(link)
        url = drive(read_sun_url(), traced.transceive)
        link.close()
        counter.append(traced.apdus)
        return url

    return tap


def _apdus_detail(counter: list[int]) -> str:
    per_read = sorted(set(counter))
    return f"APDUs per read: {', '.join(map(str, per_read))}"


def _pcsc_rows(n_apdu: int, n_read: int) -> list[dict[str, Any]]:
    sys.path.insert(0, str(REPO / "tests"))
    try:
        import pcscd_harness
    finally:
        sys.path.pop(0)
    why = pcscd_harness.unavailable_reason()
    if why:
        return [_skipped("pcscd+vpcd", why)]
    from station.emulator.bridges.vpcd import VpcdError
    from station.readers.base import ReaderError

    # One pcscd per machine: another suite may stop the one we reused mid-run. Start again.
    failure = ""
    for _attempt in range(3):
        daemon = pcscd_harness.Pcscd()
        try:
            daemon.start()
            return _measure_pcsc(n_apdu, n_read)
        except (ReaderError, VpcdError, RuntimeError, TimeoutError, OSError) as exc:
            failure = f"{type(exc).__name__}: {exc}"
        finally:
            daemon.close()
    return [_skipped("pcscd+vpcd", failure)]


def _measure_pcsc(n_apdu: int, n_read: int) -> list[dict[str, Any]]:
    from station.emulator.bridges.vpcd import VpcdBridge
    from station.readers.pcsc import PcscReader

    rows: list[dict[str, Any]] = []
    bridge = VpcdBridge(_bolt_card(), port=VPCD_PORT)
    reader = PcscReader(VPCD_SLOT)
    try:
        reader.wait_for_removal(5.0)  # a card left by someone else must be gone first
        detect = []
        for _ in range(3 if quick() else 6):
            started = time.perf_counter()
            bridge.insert()
            link = reader.wait_for_card(5.0)
            detect.append(time.perf_counter() - started)
            if link is None:
                raise TimeoutError("the vpcd card never appeared")
            link.close()
            bridge.remove()
            reader.wait_for_removal(5.0)
        bridge.insert()
        link = reader.wait_for_card(5.0)
        if link is None:
            raise TimeoutError("the vpcd card never appeared")
        rows.append(
            latency_row(
                "APDU round trip, pcscd+vpcd",
                _time(lambda: link.transceive(GET_UID), n_apdu),
                "pyscard SCardTransmit → pcscd → vpcd TCP (TCP_QUICKACK) → EmulatedCard",
            )
        )
        link.close()
        counter: list[int] = []
        rows.append(
            latency_row(
                "SUN URL read from card present, pcscd+vpcd",
                _time(_sun_read(reader, counter), n_read),
                f"SCardConnect + read_sun_url + disconnect; {_apdus_detail(counter)}",
            )
        )
        rows.append(
            latency_row(
                "card insert → reported present, pcscd+vpcd",
                detect,
                "vpcd polls every ~400 ms: a test-stack artefact, not tap latency",
            )
        )
    finally:
        reader.close()
        bridge.remove()
    return rows


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _nfcpy_rows(n_apdu: int, n_read: int) -> list[dict[str, Any]]:
    try:
        import nfc  # noqa: F401
    except ImportError:
        return [_skipped("nfcpy udp", "nfcpy is not installed")]
    from station.emulator.bridges.nfc_udp import NfcUdpCard
    from station.readers.nfcpy_reader import NfcpyReader

    port = _free_udp_port()
    server = NfcUdpCard(_bolt_card(), port=port)
    reader = NfcpyReader(f"udp:127.0.0.1:{port}")
    rows: list[dict[str, Any]] = []
    try:
        server.insert()
        link = reader.wait_for_card(10.0)
        if link is None:
            return [_skipped("nfcpy udp", "the udp card was never activated")]
        rows.append(
            latency_row(
                "APDU round trip, nfcpy udp",
                _time(lambda: link.transceive(GET_UID), n_apdu),
                "nfcpy Type4ATag.transceive → udp → ISO 14443-4 card thread → EmulatedCard",
            )
        )
        counter: list[int] = []
        rows.append(
            latency_row(
                "SUN URL read from card present, nfcpy udp",
                _time(_sun_read(reader, counter), n_read),
                f"sense + anticollision + RATS + read_sun_url; {_apdus_detail(counter)}",
            )
        )
    finally:
        reader.close()
        server.remove()
    return rows


def _emulated_rows(n_read: int) -> list[dict[str, Any]]:
    from station.readers.emulated import EmulatedReader

    reader = EmulatedReader()
    reader.present(_bolt_card())
    counter: list[int] = []
    return [
        latency_row(
            "SUN URL read from card present, in-process",
            _time(_sun_read(reader, counter), n_read),
            f"EmulatedReader, no transport: the card's own cost; {_apdus_detail(counter)}",
        )
    ]


def run() -> list[dict[str, Any]]:
    n_apdu, n_read = (300, 60) if quick() else (3000, 400)
    return [*_pcsc_rows(n_apdu, n_read), *_nfcpy_rows(n_apdu, n_read), *_emulated_rows(n_read)]
