"""One tap, from a card in the field to a decision and a durable record.

    CardLink ──read_sun_url (3 APDUs)──► URL ──parse/verify (keys)──► uid, counter
        ──policy: host allow-list, card status (blocked/wiped), counter above the last accepted──►
        TapResult ──spool to the outbox (fsync)──► tracker verdict (or offline) ──► charge hook

Pure-ish: everything with side effects (the verifier's key store, the outbox, the forwarder, the
tracker status lookup, the clock) is handed in, so tests drive it with an EmulatedReader or a
fake CardLink. The reader feedback and the log line belong to the daemon, which calls
:meth:`TapPipeline.process` once per card presentation.

What is recorded: every tap whose card we can name. An accepted tap is recorded under the key
"<UID>:<counter>"; a refused one (replay, blocked, host not allowed, bad MAC) under
"<station>:<uuid4>". A bad-MAC tap has no trustworthy UID, so only then the pipeline spends a
fourth APDU (the reader's ``FF CA`` get-UID) to name the card it refuses. A card that is not a
Bolt Card at all (not an NTAG 424 DNA, blank, another NDEF) raises :class:`UnsupportedCard` and
records nothing; a card pulled mid-read raises the reader's ``CardRemoved`` and records nothing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from threading import Lock
from typing import Any, Protocol
from urllib.parse import urlsplit

from station.readers.base import CardLink, CardRemoved, ReaderError
from station.recorder import (
    BLOCKED,
    CONFLICT,
    DELIVERED,
    CardStatus,
    Delivery,
    LocalReplay,
    RecorderUnavailable,
    TapRecord,
)

ACCEPTED = "accepted"
REFUSED = "refused"

# Refusal reasons, as stored in the tracker and shown to operators.
INVALID_TAP = "invalid_tap"
UNKNOWN_CARD = "unknown_card"
CARD_BLOCKED = "card_blocked"
CARD_WIPED = "card_wiped"
REPLAY = "counter_not_increasing"
HOST_NOT_ALLOWED = "host_not_allowed"

GET_UID_APDU = bytes.fromhex("FFCA000000")


class UnsupportedCard(Exception):
    """The card in the field is not a Bolt Card we can read (not an NTAG 424 DNA, blank card,
    no SUN URL). Nothing is recorded; the daemon logs one line and waits for removal."""

    def __init__(self, reason: str, apdus: int = 0) -> None:
        self.reason = reason
        self.apdus = apdus
        super().__init__(f"not a Bolt Card: {reason}")


class UnknownCard(Exception):
    """The keys we hold do not belong to this card (the key store has no match)."""

    def __init__(self, reason: str = UNKNOWN_CARD, uid: bytes | None = None) -> None:
        self.reason = reason
        self.uid = uid
        super().__init__("unknown card")


@dataclass(frozen=True)
class VerifiedTap:
    uid: bytes
    counter: int
    card_id: str | None = None


class TapVerifier(Protocol):
    """Turns a SUN URL into a verified (uid, counter).

    Raises ``InvalidTap`` (bad MAC, tag...), :class:`UnknownCard`, or ``MalformedInput`` when the
    URL is not a SUN URL at all.
    """

    def verify(self, url: str) -> VerifiedTap: ...


class CounterMemory(Protocol):
    def last_counter(self, uid: str) -> int | None: ...


@dataclass(frozen=True)
class TapResult:
    """What happened to one presentation of a card. ``url`` holds p/c: never log it."""

    outcome: str
    reason: str | None
    uid: str | None
    counter: int | None
    card_id: str | None
    host: str | None
    apdus: int
    ms: float
    url: str | None = field(default=None, repr=False)  # p/c: a spendable tap
    recorded: str = "no"  # no | spooled | delivered | conflict | blocked | rejected
    detail: str | None = None  # precise verifier reason, for the operator's log

    @property
    def accepted(self) -> bool:
        return self.outcome == ACCEPTED

    def log_fields(self) -> dict[str, Any]:
        """The fields of the one log line per tap: no keys, no p/c, a shortened UID."""
        return {
            "card": short_id(self.card_id) or short_uid(self.uid),
            "counter": self.counter,
            "outcome": self.outcome,
            "reason": self.reason,
            "ms": round(self.ms, 2),
            "apdus": self.apdus,
            "recorded": self.recorded,
        }


def short_id(card_id: str | None) -> str | None:
    """The first 8 hex digits of the Bolt Card ID: enough to find the card, short in a log."""
    return None if not card_id else card_id[:8]


def short_uid(uid: str | None) -> str | None:
    if uid is None:
        return None
    return uid if len(uid) <= 8 else f"{uid[:4]}…{uid[-2:]}"


class StatusCache:
    """Card status from the tracker, trusted for ``ttl`` seconds.

    A lookup that fails (tracker down) returns the last known status, however old, or ``None``;
    ``skip`` lets the caller avoid the network entirely while the forwarder knows it is offline.
    """

    def __init__(
        self,
        fetch: Callable[[str], CardStatus],
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[str, tuple[float, CardStatus]] = {}
        self._lock = Lock()

    def get(self, uid: str, *, skip_fetch: bool = False) -> CardStatus | None:
        now = self._clock()
        with self._lock:
            hit = self._entries.get(uid)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        if skip_fetch:
            return hit[1] if hit else None
        try:
            status = self._fetch(uid)
        except RecorderUnavailable:
            return hit[1] if hit else None
        with self._lock:
            self._entries[uid] = (now, status)
        return status

    def forget(self, uid: str) -> None:
        with self._lock:
            self._entries.pop(uid, None)


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
    """Read the card's SUN URL with B1's 3-APDU flow; map card-side failures to UnsupportedCard."""
    from station.ntag424 import errors, flows

    try:
        got: Any = flows.drive(flows.read_sun_url(), transceive)
    except ReaderError:
        raise
    except (errors.Ntag424Error, ValueError, IndexError) as exc:
        raise UnsupportedCard(_card_failure(exc)) from None
    url = getattr(got, "url", got)
    if isinstance(url, bytes | bytearray):
        url = bytes(url).decode("utf-8", "replace")
    if not isinstance(url, str) or not url:
        raise UnsupportedCard("empty NDEF file (blank card?)")
    return url


def _card_failure(exc: Exception) -> str:
    from station.ntag424 import errors

    if isinstance(exc, errors.CardError):
        if exc.sw in (0x6A82, 0x91F0, 0x6D00, 0x6E00, 0x6A86):
            return f"no NTAG 424 DNA NDEF application (card answered {exc.sw:04X})"
        return f"card answered {exc.sw:04X}"
    if isinstance(exc, errors.ProtocolError):
        return "no readable NDEF URL (blank card, or the answer broke the protocol)"
    return "no readable NDEF URL (blank or foreign card)"


class TapPipeline:
    """Decides one tap. Build once per daemon; :meth:`process` is safe from several threads."""

    def __init__(
        self,
        *,
        verifier: TapVerifier,
        station_name: str,
        host_allowed: Callable[[str | None], bool] = lambda host: True,
        memory: CounterMemory | None = None,
        status: StatusCache | None = None,
        journal: Journal | None = None,
        on_accepted: Callable[[TapResult], TapResult] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC).astimezone(),
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.verifier = verifier
        self.station_name = station_name
        self.host_allowed = host_allowed
        self.memory = memory
        self.status = status
        self.journal = journal
        # The "charge armed" step (LNURL-withdraw) plugs in here: it runs after the tap is
        # accepted and recorded, and returns the result with the claim's outcome.
        self.on_accepted = on_accepted
        self._now = now
        self._clock = clock

    # -- the decision ------------------------------------------------------------------------

    def process(self, link: CardLink) -> TapResult:
        """Read, verify, decide, record. Raises UnsupportedCard / ReaderError (nothing recorded)."""
        start = self._clock()
        result = self.evaluate(link, start=start)
        if self.journal is not None:
            result = self.journal.commit(result, station_name=self.station_name, now=self._now())
        if result.accepted and self.on_accepted is not None:
            result = self.on_accepted(result)
        return replace(result, ms=(self._clock() - start) * 1000.0)

    def evaluate(self, link: CardLink, *, start: float | None = None) -> TapResult:
        """Everything but the recording: read the URL, verify it, apply the refusal rules."""
        from station.ntag424.errors import InvalidTap, MalformedInput

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
        except InvalidTap as exc:
            uid = self._reader_uid(count)
            return done(REFUSED, INVALID_TAP, uid=uid, detail=exc.reason)
        except UnknownCard as exc:
            uid = exc.uid.hex().upper() if exc.uid else self._reader_uid(count)
            return done(REFUSED, UNKNOWN_CARD, uid=uid, detail=exc.reason)

        uid = tap.uid.hex().upper()
        base = {"uid": uid, "counter": tap.counter, "card_id": tap.card_id}
        if not self.host_allowed(host):
            return done(REFUSED, HOST_NOT_ALLOWED, **base)
        skip = self.journal is not None and not self.journal.online
        status = self.status.get(uid, skip_fetch=skip) if self.status is not None else None
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


def _host(url: str) -> str | None:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host.lower() if host else None


class Journal:
    """Spools a decided tap to the outbox, then waits briefly for the tracker's verdict.

    Durable first: the record is committed (fsync) before this returns, and the daemon gives the
    reader feedback only after. If the tracker answers within ``confirm_timeout`` its verdict
    wins (409 → a replay or a race another station won; 403 → blocked): the result turns into a
    refusal. If it does not, the tap stands on the station's own counter memory — the offline
    trade-off — and the forwarder delivers it later.
    """

    def __init__(
        self,
        outbox: Any,
        forwarder: Any,
        confirm_timeout: float = 1.5,
        station_name: str = "station",
    ) -> None:
        self.outbox = outbox
        self.forwarder = forwarder
        self.confirm_timeout = confirm_timeout
        self.status: StatusCache | None = None
        self._station_name = station_name

    @property
    def online(self) -> bool:
        return bool(getattr(self.forwarder, "online", True))

    def on_settled(self, entry: Any, delivery: Delivery) -> None:
        """Forwarder hook: when the tracker turns down an accepted tap (a replay it knew about,
        a race another station won, a card blocked meanwhile), spool a refused record so the
        operator sees that refusal too, and raise the replay memory to the tracker's counter."""
        record: TapRecord = entry.record
        if record.outcome != ACCEPTED or delivery.state not in (CONFLICT, BLOCKED):
            return
        if delivery.last_counter is not None:
            self.outbox.remember_counter(record.card_uid, int(delivery.last_counter))
        if self.status is not None:
            self.status.forget(record.card_uid)
        station = self._station_name
        self.outbox.append(
            replace(
                record,
                idempotency_key=f"{station}:{uuid.uuid4()}",
                outcome=REFUSED,
                reason=REPLAY if delivery.state == CONFLICT else CARD_BLOCKED,
            )
        )
        self.forwarder.kick()

    def commit(self, result: TapResult, *, station_name: str, now: datetime) -> TapResult:
        if result.uid is None:
            return result  # nothing to name the card by: logged only
        stamp = now.isoformat(timespec="milliseconds")
        if result.accepted:
            assert result.counter is not None
            key = f"{result.uid}:{result.counter}"
        else:
            key = f"{station_name}:{uuid.uuid4()}"
        record = TapRecord(
            idempotency_key=key,
            card_uid=result.uid,
            card_id=result.card_id,
            counter=result.counter if result.counter is not None else 0,
            station_time=stamp,
            outcome=result.outcome,
            reason=result.reason,
            issuer_host=result.host,
        )
        try:
            seq = self.outbox.append(record)
        except LocalReplay as exc:
            # Another reader of this station accepted the same counter a moment ago.
            refused = replace(result, outcome=REFUSED, reason=REPLAY,
                              detail=f"last accepted counter {exc.last_counter}")
            return self.commit(refused, station_name=station_name, now=now)
        self.forwarder.kick()
        result = replace(result, recorded="spooled")
        if not result.accepted or self.confirm_timeout <= 0 or not self.online:
            return result
        delivery: Delivery | None = self.forwarder.wait_for(seq, self.confirm_timeout)
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


# -- verifiers: from a SUN URL to a verified (uid, counter) -------------------------------------


class StaticKeysVerifier:
    """One card's K1/K2 (``station read --k1/--k2``). Thread-safe: a lock guards the cached
    cipher contexts of the fast verifier, which costs microseconds per tap."""

    def __init__(self, k1: bytes, k2: bytes, card_id: str | None = None) -> None:
        from station.ntag424.sun import SunVerifier

        self._verifier = SunVerifier(k1, k2)
        self._card_id = card_id
        self._lock = Lock()

    def verify(self, url: str) -> VerifiedTap:
        from station.ntag424.sun import parse_sun_url

        params = parse_sun_url(url)
        with self._lock:
            result = self._verifier.verify(params)
        uid, counter = result.identity()
        return VerifiedTap(uid, counter, self._card_id)


class KeyStoreVerifier:
    """Finds the card's keys in the key store (per-card file and/or issuer key) from p/c."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._lock = Lock()

    def verify(self, url: str) -> VerifiedTap:
        from station.ntag424.sun import parse_sun_url

        params = parse_sun_url(url)
        with self._lock:
            found = _keystore_verify(self._store, params)
        return found


def _keystore_verify(store: Any, params: Any) -> VerifiedTap:
    """Adapter to ``station.ntag424.keys.KeyStore.verify``: "no key of ours decrypts p to a known
    card" (a LookupError) becomes :class:`UnknownCard`; a forged MAC stays ``InvalidTap``."""
    try:
        match = store.verify(params)
    except LookupError:
        raise UnknownCard() from None
    card_id = match.card_id
    if isinstance(card_id, bytes | bytearray):
        card_id = bytes(card_id).hex()
    return VerifiedTap(match.uid, match.counter, card_id)


def build_verifier(keys: Any) -> TapVerifier:
    """A verifier from :class:`station.settings.KeySettings` (keys file and/or issuer key)."""
    from station.ntag424 import keys as keymod

    if not keys.configured:
        raise ValueError(
            "no card keys configured: set [keys] file and/or issuer_key "
            "(STATION_KEYS_FILE / STATION_ISSUER_KEY)"
        )
    issuer = bytes.fromhex(keys.issuer_key.reveal()) if keys.issuer_key is not None else None
    store = keymod.KeyStore.from_sources(
        keys_file=keys.keys_file, issuer_key=issuer, version=keys.issuer_key_version
    )
    return KeyStoreVerifier(store)
