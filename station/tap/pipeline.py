"""One tap, from a card in the field to a decision and a durable record.

    CardLink ──read_sun_url (3 APDUs)──► URL ──verify (keys)──► uid, counter
        ──policy: host allow-list, card status (blocked/wiped), counter above the last accepted──►
        TapResult ──spool to the outbox (fsync)──► tracker verdict (or offline) ──► AfterAccept

Everything with side effects (the verifier's key store, the outbox, the verdict source, the
tracker status lookup, the clock) is handed in at construction as a narrow Protocol, so tests
drive it with an EmulatedReader or a fake CardLink. Calls go one way: the pipeline appends to
the outbox and may wait for a verdict; nothing calls back into it. The reader feedback and the
log line belong to the daemon, which calls :meth:`TapPipeline.process` once per presentation.

What is recorded: every tap whose card we can name. An accepted tap is recorded under the key
"<UID>:<counter>"; a refused one (replay, blocked, host not allowed, bad MAC) under
"<station>:<uuid4>". A bad-MAC tap has no trustworthy UID, so only then the pipeline spends a
fourth APDU (the reader's ``FF CA`` get-UID) to name the card it refuses. A card that is not a
Bolt Card at all (not an NTAG 424 DNA, blank, another NDEF) raises :class:`UnsupportedCard` and
records nothing; a card pulled mid-read raises the reader's ``CardRemoved`` and records nothing.

If the tracker answers within ``confirm_timeout`` its verdict wins (409 → a replay or a race
another station won; 403 → blocked): the result turns into a refusal (the outbox records that
refusal itself when it settles the answer). If it does not, the tap stands on the station's own
counter memory — the offline trade-off — and the forwarder delivers it later.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

from station.ntag424 import errors, flows
from station.ntag424.errors import InvalidTap, MalformedInput
from station.ntag424.keys import UnknownCard
from station.outbox.outbox import LocalReplay
from station.readers.base import CardLink, CardRemoved, ReaderError
from station.tap.result import (
    ACCEPTED,
    CARD_BLOCKED,
    CARD_WIPED,
    HOST_NOT_ALLOWED,
    INVALID_TAP,
    REFUSED,
    REPLAY,
    UNKNOWN_CARD,
    TapResult,
    UnsupportedCard,
)
from station.tap.verifier import TapVerifier
from station.uplink.base import BLOCKED, CONFLICT, DELIVERED, CardStatus, Delivery
from station.uplink.records import Record, TapRecord

GET_UID_APDU = bytes.fromhex("FFCA000000")


# -- what the pipeline is handed ------------------------------------------------------------------


class CounterMemory(Protocol):
    """The station's replay memory (the outbox's counters)."""

    def last_counter(self, uid: str) -> int | None: ...


class StatusLookup(Protocol):
    """The tracker's view of a card (``None`` when unknown and unreachable)."""

    def get(self, uid: str, *, skip_fetch: bool = False) -> CardStatus | None: ...


class TapSpool(Protocol):
    """Where decided taps go, durably, before the customer sees the result."""

    def append(self, record: Record) -> int:
        """Spool and return the record's seq; raise ``LocalReplay`` for a counter not above
        the remembered one (an accepted tap only)."""
        ...


class Verdicts(Protocol):
    """The tracker's answer to a spooled record, if it comes in time (the forwarder)."""

    @property
    def online(self) -> bool: ...

    def await_verdict(self, seq: int, timeout: float) -> Delivery | None: ...


class AfterAccept(Protocol):
    """What happens after a tap is accepted and recorded (the charge flow plugs in here).

    Gets the result and the card link (still open); returns the result, e.g. with ``claim``
    set. It runs on the reader's thread, before the reader feedback.
    """

    def __call__(self, result: TapResult, link: CardLink | None, reader: str) -> TapResult: ...


# -- reading the card -----------------------------------------------------------------------------


class _Counting:
    """Wraps a CardLink's transceive to count APDUs."""

    __slots__ = ("link", "n")

    def __init__(self, link: CardLink) -> None:
        self.link = link
        self.n = 0

    def __call__(self, apdu: bytes) -> bytes:
        self.n += 1
        answer = self.link.transceive(apdu)
        if len(answer) < 2:
            # No status word is never a card's answer. Through pcscd + vpcd this is what a
            # transmit returns when the card left mid-exchange; treat it as that.
            raise CardRemoved("the reader returned no status word; the card left the field?")
        return answer


def read_url(transceive: Callable[[bytes], bytes]) -> str:
    """Read the card's SUN URL with the 3-APDU flow; map card-side failures to UnsupportedCard."""
    try:
        url = flows.drive(flows.read_sun_url(), transceive)
    except ReaderError:
        raise
    except (errors.Ntag424Error, ValueError, IndexError) as exc:
        raise UnsupportedCard(_card_failure(exc)) from None
    if not url:
        raise UnsupportedCard("empty NDEF file (blank card?)")
    return url


def _card_failure(exc: Exception) -> str:
    if isinstance(exc, errors.CardError):
        if exc.sw in (0x6A82, 0x91F0, 0x6D00, 0x6E00, 0x6A86):
            return f"no NTAG 424 DNA NDEF application (card answered {exc.sw:04X})"
        return f"card answered {exc.sw:04X}"
    if isinstance(exc, errors.ProtocolError):
        return "no readable NDEF URL (blank card, or the answer broke the protocol)"
    return "no readable NDEF URL (blank or foreign card)"


def _host(url: str) -> str | None:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host.lower() if host else None


# -- the pipeline ---------------------------------------------------------------------------------


class TapPipeline:
    """Decides one tap. Build once per daemon; :meth:`process` is safe from several threads."""

    def __init__(
        self,
        *,
        verifier: TapVerifier,
        station_name: str,
        host_allowed: Callable[[str | None], bool] = lambda host: True,
        memory: CounterMemory | None = None,
        status: StatusLookup | None = None,
        outbox: TapSpool | None = None,
        verdicts: Verdicts | None = None,
        confirm_timeout: float = 1.5,
        after_accept: AfterAccept | None = None,
        accept_foreign: bool = False,
        now: Callable[[], datetime] = lambda: datetime.now(UTC).astimezone(),
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.verifier = verifier
        self.station_name = station_name
        self.host_allowed = host_allowed
        self.memory = memory
        self.status = status
        self.outbox = outbox
        self.verdicts = verdicts
        self.confirm_timeout = confirm_timeout
        self.after_accept = after_accept
        self.accept_foreign = accept_foreign
        self._now = now
        self._clock = clock

    @property
    def online(self) -> bool:
        return self.verdicts is None or self.verdicts.online

    def process(self, link: CardLink, *, reader: str = "") -> TapResult:
        """Read, verify, decide, record. Raises UnsupportedCard / ReaderError (nothing recorded).

        ``reader`` names the reader the card lies on: the after-accept hook uses it to find the
        charge armed there.
        """
        start = self._clock()
        result = self.evaluate(link, start=start)
        if self.outbox is not None:
            result = self._record(self.outbox, result, self._now())
        if result.accepted and self.after_accept is not None:
            result = self.after_accept(result, link, reader)
        return replace(result, ms=(self._clock() - start) * 1000.0)

    def evaluate(self, link: CardLink, *, start: float | None = None) -> TapResult:
        """Everything but the recording: read the URL, verify it, apply the refusal rules."""
        t0 = self._clock() if start is None else start
        count = _Counting(link)
        try:
            url = read_url(count)
        except UnsupportedCard as exc:
            exc.apdus = count.n
            raise
        host = _host(url)

        def done(outcome: str, reason: str | None, **kw: Any) -> TapResult:
            fields: dict[str, Any] = {
                "outcome": outcome,
                "reason": reason,
                "uid": None,
                "counter": None,
                "card_id": None,
                "host": host,
                "apdus": count.n,
                "ms": (self._clock() - t0) * 1000.0,
                "url": url,
            }
            fields.update(kw)
            return TapResult(**fields)

        try:
            tap = self.verifier.verify(url)
        except MalformedInput:
            raise UnsupportedCard("NDEF URL is not a SUN URL (no p/c)", count.n) from None
        except UnknownCard as exc:  # before InvalidTap: it is one
            uid = self._reader_uid(count)
            if self.accept_foreign and uid is not None and self.host_allowed(host):
                # Not ours to verify: only a charge can use it, and the issuer decides.
                return done(ACCEPTED, None, uid=uid, verified=False,
                            detail="foreign card: not verified by the station")
            return done(REFUSED, UNKNOWN_CARD, uid=uid, detail=exc.reason)
        except InvalidTap as exc:
            return done(REFUSED, INVALID_TAP, uid=self._reader_uid(count), detail=exc.reason)

        uid = tap.uid.hex().upper()
        base = {"uid": uid, "counter": tap.counter, "card_id": tap.card_id}
        if not self.host_allowed(host):
            return done(REFUSED, HOST_NOT_ALLOWED, **base)
        status = self.status.get(uid, skip_fetch=not self.online) if self.status else None
        if status is not None and status.status == "blocked":
            return done(REFUSED, CARD_BLOCKED, **base)
        if status is not None and status.status == "wiped":
            return done(REFUSED, CARD_WIPED, **base)
        last = self.memory.last_counter(uid) if self.memory is not None else None
        if status is not None and status.last_counter is not None:
            last = status.last_counter if last is None else max(last, status.last_counter)
        if last is not None and tap.counter <= last:
            return done(REFUSED, REPLAY, detail=f"last accepted counter {last}", **base)
        return done(ACCEPTED, None, **base)

    def _reader_uid(self, count: _Counting) -> str | None:
        """The UID as the reader sees it (anticollision), for naming a refused card."""
        try:
            rapdu = count(GET_UID_APDU)
        except ReaderError:
            raise
        except Exception:
            return None
        if len(rapdu) >= 6 and rapdu[-2:] == b"\x90\x00" and len(rapdu) - 2 in (4, 7, 10):
            return rapdu[:-2].hex().upper()
        return None

    # -- recording --------------------------------------------------------------------------------

    def _record(self, outbox: TapSpool, result: TapResult, now: datetime) -> TapResult:
        """Spool the decided tap (fsync), then wait briefly for the tracker's verdict."""
        if result.uid is None:
            return result  # nothing to name the card by: logged only
        if result.accepted and result.verified:
            assert result.counter is not None
            key = f"{result.uid}:{result.counter}"
        else:
            key = f"{self.station_name}:{uuid.uuid4()}"
        record = TapRecord(
            idempotency_key=key,
            card_uid=result.uid,
            card_id=result.card_id,
            counter=result.counter if result.counter is not None else 0,
            station_time=now.isoformat(timespec="milliseconds"),
            outcome=result.outcome,
            reason=result.reason,
            issuer_host=result.host,
            verified=result.verified,
        )
        try:
            seq = outbox.append(record)
        except LocalReplay as exc:
            # Another reader of this station accepted the same counter a moment ago.
            refused = replace(result, outcome=REFUSED, reason=REPLAY,
                              detail=f"last accepted counter {exc.last_counter}")
            return self._record(outbox, refused, now)
        result = replace(result, recorded="spooled", key=key)
        if not result.accepted or self.confirm_timeout <= 0 or self.verdicts is None:
            return result
        if not self.verdicts.online:
            return result
        delivery = self.verdicts.await_verdict(seq, self.confirm_timeout)
        if delivery is None:
            return result
        if delivery.state == DELIVERED:
            return replace(result, recorded="delivered")
        if delivery.state == CONFLICT:
            return replace(
                result, outcome=REFUSED, reason=REPLAY, recorded="conflict",
                detail=f"tracker's last counter {delivery.last_counter}",
            )
        if delivery.state == BLOCKED:
            return replace(result, outcome=REFUSED, reason=CARD_BLOCKED, recorded="blocked")
        return replace(result, recorded=delivery.state)
