"""The tap pipeline over a fake Bolt Card: what a merchant would see for each kind of tap."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from station_fakes import DirectLink, DyingLink, FakeBoltCard

from station.outbox.forwarder import Forwarder
from station.outbox.outbox import Outbox
from station.readers.base import CardLink, CardRemoved
from station.tap.pipeline import TapPipeline
from station.tap.result import (
    ACCEPTED,
    CARD_BLOCKED,
    CARD_WIPED,
    HOST_NOT_ALLOWED,
    INVALID_TAP,
    REFUSED,
    REPLAY,
    TapResult,
    UnsupportedCard,
)
from station.tap.status import StatusCache
from station.tap.verifier import StaticKeysVerifier
from station.uplink.base import (
    BLOCKED,
    CONFLICT,
    DELIVERED,
    CardStatus,
    Delivery,
    OneAtATime,
    UplinkUnavailable,
)
from station.uplink.records import TapRecord

UID = bytes.fromhex("04A1B2C3D4E5F6")
K1 = bytes(range(16))
K2 = bytes(range(16, 32))


def card(**kw) -> FakeBoltCard:  # type: ignore[no-untyped-def]
    return FakeBoltCard(UID, K1, K2, **kw)


def pipeline(**kw) -> TapPipeline:  # type: ignore[no-untyped-def]
    kw.setdefault("verifier", StaticKeysVerifier(K1, K2))
    return TapPipeline(station_name="till-1", **kw)


class MemoryOnly:
    def __init__(self, last: dict[str, int]) -> None:
        self.last = last

    def last_counter(self, uid: str) -> int | None:
        return self.last.get(uid)


def test_valid_tap_is_accepted_in_three_apdus() -> None:
    c = card(counter=41)
    result = pipeline().process(DirectLink(c))
    assert result.outcome == ACCEPTED and result.reason is None
    assert result.uid == "04A1B2C3D4E5F6"
    assert result.counter == 42
    assert result.host == "pay.example.com"
    assert result.apdus == 3 and len(c.apdus) == 3


def test_tap_result_repr_and_log_fields_hold_no_p_or_c() -> None:
    """A fresh p/c pair is a spendable tap: it must not reach a log line or a traceback."""
    result = pipeline().process(DirectLink(card(counter=7)))
    assert result.url is not None
    query = result.url.split("?", 1)[1]
    p_hex = query.split("p=")[1][:32]
    c_hex = query.split("c=")[1][:16]
    for text in (repr(result), str(result), repr(result.log_fields())):
        assert p_hex.lower() not in text.lower() and c_hex.lower() not in text.lower()


def test_same_url_twice_is_a_replay() -> None:
    box = Outbox(":memory:")
    pipe = pipeline(memory=box, outbox=box, confirm_timeout=0)
    c = card(counter=7, frozen=True)  # serves the same URL every time
    first = pipe.process(DirectLink(c))
    second = pipe.process(DirectLink(c))
    assert (first.outcome, first.counter) == (ACCEPTED, 7)
    assert (second.outcome, second.reason, second.counter) == (REFUSED, REPLAY, 7)
    # Both are on record for the operator: the acceptance and the refused replay.
    outcomes = []
    while (entry := box.next_pending()) is not None:
        outcomes.append((entry.record.outcome, entry.record.idempotency_key.split(":")[0]))
        box.settle(entry.seq, Delivery(DELIVERED))
    assert outcomes == [(ACCEPTED, "04A1B2C3D4E5F6"), (REFUSED, "till-1")]


def test_counter_rolled_back_is_refused() -> None:
    pipe = pipeline(memory=MemoryOnly({"04A1B2C3D4E5F6": 100}))
    result = pipe.process(DirectLink(card(counter=5)))
    assert (result.outcome, result.reason) == (REFUSED, REPLAY)


def test_wrong_keys_are_refused_and_named_by_the_reader_uid() -> None:
    forged = FakeBoltCard(UID, os.urandom(16), os.urandom(16))
    result = pipeline().process(DirectLink(forged))
    assert (result.outcome, result.reason) == (REFUSED, INVALID_TAP)
    assert result.uid == UID.hex().upper()  # from FF CA, the only extra APDU
    assert result.counter is None
    assert result.apdus == 4


def test_tampered_c_is_refused() -> None:
    c = card(counter=3)
    url = c.current_url()
    bad = url[:-1] + ("0" if url[-1] != "0" else "1")
    result = pipeline().process(DirectLink(card(url=bad)))
    assert (result.outcome, result.reason) == (REFUSED, INVALID_TAP)


def test_host_outside_the_allow_list_is_refused() -> None:
    pipe = pipeline(host_allowed=lambda h: h == "pay.example.com")
    evil = card(base="lnurlw://evil.example.net/ln")
    result = pipe.process(DirectLink(evil))
    assert (result.outcome, result.reason, result.host) == (REFUSED, HOST_NOT_ALLOWED,
                                                            "evil.example.net")
    assert pipe.process(DirectLink(card())).outcome == ACCEPTED


@pytest.mark.parametrize(("status", "reason"), [("blocked", CARD_BLOCKED), ("wiped", CARD_WIPED)])
def test_blocked_or_wiped_card_is_refused(status: str, reason: str) -> None:
    cache = StatusCache(lambda uid: CardStatus(status, None), ttl=60)
    result = pipeline(status=cache).process(DirectLink(card()))
    assert (result.outcome, result.reason) == (REFUSED, reason)


def test_tracker_counter_counts_for_replay() -> None:
    cache = StatusCache(lambda uid: CardStatus("active", 50), ttl=60)
    result = pipeline(status=cache).process(DirectLink(card(counter=10)))
    assert (result.outcome, result.reason) == (REFUSED, REPLAY)


def test_status_cache_trusts_an_answer_for_its_ttl_and_survives_an_outage() -> None:
    now = [0.0]
    calls: list[str] = []
    answers = [CardStatus("active", 1), UplinkUnavailable("down")]

    def fetch(uid: str) -> CardStatus:
        calls.append(uid)
        answer = answers[min(len(calls) - 1, 1)]
        if isinstance(answer, Exception):
            raise answer
        return answer

    cache = StatusCache(fetch, ttl=5, clock=lambda: now[0])
    assert cache.get("04AA") == CardStatus("active", 1)
    now[0] = 4.9
    assert cache.get("04AA") == CardStatus("active", 1)
    assert len(calls) == 1
    now[0] = 6
    assert cache.get("04AA") == CardStatus("active", 1)  # stale but better than nothing
    assert len(calls) == 2


def test_foreign_card_is_not_a_bolt_card() -> None:
    with pytest.raises(UnsupportedCard) as err:
        pipeline().process(DirectLink(card(foreign=True)))
    assert "NTAG 424" in err.value.reason


@pytest.mark.parametrize("url", ["", "https://example.com/hello"])
def test_blank_or_plain_url_card_is_not_a_bolt_card(url: str) -> None:
    with pytest.raises(UnsupportedCard):
        pipeline().process(DirectLink(card(url=url)))


@pytest.mark.parametrize("after", [0, 1, 2])
def test_card_removed_mid_read_records_nothing(after: int) -> None:
    box = Outbox(":memory:")
    pipe = pipeline(memory=box, outbox=box, confirm_timeout=0)
    with pytest.raises(CardRemoved):
        pipe.process(DyingLink(card(), after))
    assert box.counts() == {}
    assert box.last_counter("04A1B2C3D4E5F6") is None


class ScriptedRecorder(OneAtATime):
    def __init__(self, answer: Delivery | None) -> None:
        self.answer = answer
        self.sent: list[TapRecord] = []

    def send(self, record: TapRecord) -> Delivery:
        if self.answer is None:
            raise UplinkUnavailable("down")
        self.sent.append(record)
        if record.outcome == REFUSED:
            return Delivery(DELIVERED, created=True)
        return self.answer

    def card_status(self, uid: str) -> CardStatus:
        raise UplinkUnavailable("no")

    def close(self) -> None:
        pass


def _journaled(tmp_path: Path, answer: Delivery | None) -> tuple[TapPipeline, Outbox,
                                                                 ScriptedRecorder, Forwarder]:
    box = Outbox(tmp_path / "o.sqlite", station_name="till-1")
    recorder = ScriptedRecorder(answer)
    fwd = Forwarder(box, recorder, backoff_initial=0.01, backoff_max=0.02)
    fwd.start()
    pipe = pipeline(memory=box, outbox=box, verdicts=fwd, confirm_timeout=5)
    return pipe, box, recorder, fwd


def test_tracker_confirms_an_accepted_tap(tmp_path: Path) -> None:
    pipe, _box, recorder, fwd = _journaled(tmp_path, Delivery(DELIVERED, created=True))
    result = pipe.process(DirectLink(card(counter=1)))
    fwd.stop()
    assert (result.outcome, result.recorded) == (ACCEPTED, "delivered")
    assert [r.idempotency_key for r in recorder.sent] == ["04A1B2C3D4E5F6:2"]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [(Delivery(CONFLICT, last_counter=9), REPLAY), (Delivery(BLOCKED), CARD_BLOCKED)],
)
def test_tracker_verdict_overrules_local_acceptance(tmp_path: Path, answer: Delivery,
                                                    reason: str) -> None:
    pipe, box, recorder, fwd = _journaled(tmp_path, answer)
    result = pipe.process(DirectLink(card(counter=1)))
    assert (result.outcome, result.reason) == (REFUSED, reason)
    assert fwd.flush(5)
    fwd.stop()
    # The tracker also gets the refusal, under a station key.
    assert [r.outcome for r in recorder.sent] == [ACCEPTED, REFUSED]
    assert recorder.sent[1].idempotency_key.startswith("till-1:")
    if answer.last_counter is not None:
        assert box.last_counter("04A1B2C3D4E5F6") == 9


def test_offline_station_accepts_on_local_memory_and_spools(tmp_path: Path) -> None:
    pipe, box, _recorder, fwd = _journaled(tmp_path, None)
    fwd.kick()
    first = pipe.process(DirectLink(card(counter=1)))  # waits confirm_timeout at most once
    assert first.outcome == ACCEPTED
    c = card(counter=5, frozen=True)
    assert pipe.process(DirectLink(c)).outcome == ACCEPTED
    assert pipe.process(DirectLink(c)).reason == REPLAY  # local memory still refuses replays
    fwd.stop()
    assert box.pending_count() == 3


# -- with the real emulated NTAG 424 DNA and the real key store ---------------------------------

ISSUER = bytes.fromhex("00112233445566778899aabbccddeeff")


def _real_card(tmp_path: Path, uid_hex: str, issuer: bytes):  # type: ignore[no-untyped-def]
    from station.cli.demo_run import load_or_provision

    return load_or_provision(tmp_path / f"{uid_hex}.json", bytes.fromhex(uid_hex), issuer,
                             "lnurlw://pay.example.com/ln")


def _issuer_pipeline(**kw) -> TapPipeline:  # type: ignore[no-untyped-def]
    from station.settings import KeySettings, Secret
    from station.tap.verifier import build_verifier

    verifier = build_verifier(KeySettings(issuer_key=Secret(ISSUER.hex())))
    return TapPipeline(verifier=verifier, station_name="till-1", **kw)


def test_emulated_bolt_card_with_issuer_keys(tmp_path: Path) -> None:
    from station.ntag424.keys import card_id
    from station.readers.emulated import EmulatedReader

    c = _real_card(tmp_path, "04C0FFEE000001", ISSUER)
    reader = EmulatedReader()
    reader.present(c)
    box = Outbox(":memory:")
    pipe = _issuer_pipeline(memory=box, outbox=box, confirm_timeout=0)
    counters = []
    for _ in range(3):
        link = reader.wait_for_card(1)
        assert link is not None
        result = pipe.process(link)
        link.close()
        assert result.outcome == ACCEPTED and result.apdus == 3
        assert result.card_id == card_id(ISSUER, bytes.fromhex("04C0FFEE000001")).hex()
        counters.append(result.counter)
    assert counters == sorted(set(counters))


def test_card_of_another_issuer_is_unknown(tmp_path: Path) -> None:
    from station.tap.result import UNKNOWN_CARD

    other = _real_card(tmp_path, "04C0FFEE000002", os.urandom(16))
    result = _issuer_pipeline().process(DirectLink(other))
    assert (result.outcome, result.reason, result.uid) == (REFUSED, UNKNOWN_CARD,
                                                           "04C0FFEE000002")


def test_factory_blank_ntag424_is_not_a_bolt_card() -> None:
    from station.emulator.card import EmulatedCard

    with pytest.raises(UnsupportedCard):
        _issuer_pipeline().process(DirectLink(EmulatedCard.factory(UID)))


def test_two_readers_of_one_station_cannot_both_accept_a_counter(tmp_path: Path) -> None:
    """Both pass the memory check; the outbox's compare-and-set lets only one through."""
    box = Outbox(tmp_path / "o.sqlite")

    class Stale:  # a memory that has not seen the other reader's tap yet
        def last_counter(self, uid: str) -> int | None:
            return None

    pipe = pipeline(memory=Stale(), outbox=box, confirm_timeout=0)
    url = card(counter=7).current_url()
    first = pipe.process(DirectLink(card(url=url)))
    second = pipe.process(DirectLink(card(url=url)))
    assert (first.outcome, second.outcome, second.reason) == (ACCEPTED, REFUSED, REPLAY)
    assert box.counts() == {"pending": 2}  # the refusal is on record too


def test_after_accept_runs_once_per_accepted_and_recorded_tap() -> None:
    box = Outbox(":memory:")
    seen: list[tuple[str | None, str | None, bool, str]] = []

    def charge(result: TapResult, link: CardLink | None, reader: str) -> TapResult:
        seen.append((result.key, result.recorded, link is not None, reader))
        return replace(result, claim="claim-1")

    pipe = pipeline(memory=box, outbox=box, confirm_timeout=0, after_accept=charge)
    c = card(counter=3, frozen=True)
    first = pipe.process(DirectLink(c), reader="pcsc:A")
    second = pipe.process(DirectLink(c), reader="pcsc:A")  # a replay: refused, no charge
    assert (first.outcome, first.claim) == (ACCEPTED, "claim-1")
    assert (second.outcome, second.claim) == (REFUSED, None)
    assert seen == [(f"{UID.hex().upper()}:3", "spooled", True, "pcsc:A")]


def test_the_url_of_a_tap_is_in_no_repr_and_no_log_field() -> None:
    result = pipeline().process(DirectLink(card(counter=1)))
    assert result.url is not None and "p=" in result.url
    assert "p=" not in repr(result)
    assert result.url not in str(result.log_fields())
