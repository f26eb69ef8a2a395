"""PC/SC backend over pyscard's low-level ``smartcard.scard`` API.

Why not pyscard's ``CardMonitor``: its singleton thread dies for good when pcscd stops
(``SCARD_E_NO_SERVICE``) and an old context stays dead after pcscd comes back. A station runs for
months, so this module keeps its own ``SCardGetStatusChange`` loop that drops a broken context,
re-establishes a new one, and notices the reader coming back.

Errors are translated at this seam (see :func:`map_error`): a card that left the field becomes
:class:`CardRemoved`, a missing service or reader :class:`ReaderUnavailable`.

Reader feedback uses the ACR122U pseudo-APDU ``FF 00 40`` (bi-colour LED and buzzer control,
ACS ACR122U API manual §6.2). ACR1252U accepts it too. Readers that answer an error get no
feedback; that is never worth failing a tap for.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from typing import Any

from station.readers.base import CardRemoved, CardUnresponsive, ReaderError, ReaderUnavailable

scard: Any
try:  # pyscard is an optional extra: importing this module must work without it
    scard = importlib.import_module("smartcard.scard")
except ImportError:  # pragma: no cover - exercised on machines without pyscard
    scard = None

log = logging.getLogger(__name__)

# SCARD return codes (pcsc-lite's pcsclite.h); kept here as data so mapping is one table.
SCARD_S_SUCCESS = 0x00000000
SCARD_E_CANCELLED = 0x80100002
SCARD_E_INVALID_HANDLE = 0x80100003
SCARD_E_UNKNOWN_READER = 0x80100009
SCARD_E_TIMEOUT = 0x8010000A
SCARD_E_NO_SMARTCARD = 0x8010000C
SCARD_F_COMM_ERROR = 0x80100013  # "RPC transport error": pcscd died during the call
SCARD_E_NOT_TRANSACTED = 0x80100016
SCARD_E_READER_UNAVAILABLE = 0x80100017
SCARD_E_NO_SERVICE = 0x8010001D
SCARD_E_SERVICE_STOPPED = 0x8010001E
SCARD_E_NO_READERS_AVAILABLE = 0x8010002E
SCARD_E_COMM_DATA_LOST = 0x8010002F
SCARD_W_UNRESPONSIVE_CARD = 0x80100066
SCARD_W_UNPOWERED_CARD = 0x80100067
SCARD_W_RESET_CARD = 0x80100068
SCARD_W_REMOVED_CARD = 0x80100069

# The context or the service is gone: drop the context and establish a new one.
CONTEXT_LOST = frozenset(
    {
        SCARD_E_NO_SERVICE,
        SCARD_E_SERVICE_STOPPED,
        SCARD_F_COMM_ERROR,
        SCARD_E_INVALID_HANDLE,
        SCARD_E_NO_READERS_AVAILABLE,
    }
)
READER_GONE = frozenset({SCARD_E_UNKNOWN_READER, SCARD_E_READER_UNAVAILABLE})
CARD_GONE = frozenset({SCARD_W_REMOVED_CARD, SCARD_E_NO_SMARTCARD, SCARD_W_RESET_CARD})
# Transmission failed: either the card left (pcscd notices on its next poll) or it is mute.
CARD_MAYBE_GONE = frozenset(
    {
        SCARD_E_NOT_TRANSACTED,
        SCARD_W_UNRESPONSIVE_CARD,
        SCARD_W_UNPOWERED_CARD,
        SCARD_E_TIMEOUT,
        SCARD_E_COMM_DATA_LOST,
    }
)

# Escape to the reader on a direct connection. pcsc-lite's SCARD_CTL_CODE(c) is 0x42000000 + c.
# ACS's own driver (acsccid) and Windows use IOCTL_CCID_ESCAPE = SCARD_CTL_CODE(3500); the
# generic libccid uses IOCTL_SMARTCARD_VENDOR_IFD_EXCHANGE = SCARD_CTL_CODE(1), and only when
# the reader's ifdDriverOptions allow it (DRIVER_OPTION_CCID_EXCHANGE_AUTHORIZED, libccid's
# SCARDCONTROL.md). We try both, in that order.
IOCTL_CCID_ESCAPE = 0x42000000 + 3500
IOCTL_SMARTCARD_VENDOR_IFD_EXCHANGE = 0x42000000 + 1

# ACR122U "Bi-Color LED and Buzzer Control": FF 00 40 P2 04 T1 T2 repetitions link-to-buzzer.
# P2 bits: 0 final red, 1 final green, 2 red mask, 3 green mask, 4 initial red blink,
# 5 initial green blink, 6 red blink mask, 7 green blink mask. T1/T2 in 100 ms units.
FEEDBACK_ACCEPTED = bytes.fromhex("FF0040A80402010101")  # green 200 ms, beep during T1
FEEDBACK_REJECTED = bytes.fromhex("FF0040540405010101")  # red 500 ms, long beep during T1


def feedback_apdu(accepted: bool) -> bytes:
    """The ACR122U LED/buzzer pseudo-APDU for an accepted or a rejected tap."""
    return FEEDBACK_ACCEPTED if accepted else FEEDBACK_REJECTED


def _require_pyscard() -> Any:
    if scard is None:
        raise ReaderUnavailable("pyscard is not installed: pip install 'boltcard-station[pcsc]'")
    return scard


def describe(code: int) -> str:
    """``0x80100069 (Card was removed.)``: hex code plus pcsc-lite's message."""
    code &= 0xFFFFFFFF
    try:
        text = str(_require_pyscard().SCardGetErrorMessage(code)).strip()
    except Exception:
        text = "unknown error"
    return f"0x{code:08X} ({text})"


def map_error(code: int, doing: str) -> ReaderError:
    """Translate an SCARD return code into the backend-neutral exception for ``doing``."""
    code &= 0xFFFFFFFF
    what = f"{doing}: {describe(code)}"
    if code in CARD_GONE:
        return CardRemoved(f"{what}; the card left the field, tap again")
    if code in CONTEXT_LOST:
        return ReaderUnavailable(f"{what}; is pcscd running? (systemctl start pcscd)")
    if code in READER_GONE:
        return ReaderUnavailable(f"{what}; the reader was unplugged or pcscd restarted")
    if code in CARD_MAYBE_GONE:
        return CardUnresponsive(f"{what}; hold the card flat on the reader and retry")
    return ReaderError(what)


def list_reader_names() -> list[str]:
    """Names of the PC/SC readers pcscd knows now; raises :class:`ReaderUnavailable` without it."""
    sc = _require_pyscard()
    rc, ctx = sc.SCardEstablishContext(sc.SCARD_SCOPE_USER)
    if rc != SCARD_S_SUCCESS:
        raise map_error(rc, "connecting to pcscd")
    try:
        rc, readers = sc.SCardListReaders(ctx, [])
        if rc in (SCARD_E_NO_READERS_AVAILABLE,):
            return []
        if rc != SCARD_S_SUCCESS:
            raise map_error(rc, "listing PC/SC readers")
        return [str(r) for r in readers]
    finally:
        sc.SCardReleaseContext(ctx)


class PcscCardLink:
    """A connected card. Not thread-safe: one flow at a time drives it."""

    def __init__(self, reader: PcscReader, hcard: int, protocol: int) -> None:
        self._reader = reader
        self._hcard: int | None = hcard
        self._protocol = protocol

    @property
    def open(self) -> bool:
        return self._hcard is not None

    def transceive(self, apdu: bytes) -> bytes:
        if self._hcard is None:
            raise CardRemoved("this card link was closed; wait for the next card")
        sc = _require_pyscard()
        rc, response = sc.SCardTransmit(self._hcard, self._protocol, list(apdu))
        rc &= 0xFFFFFFFF
        if rc == SCARD_S_SUCCESS:
            return bytes(response)
        if rc in CARD_MAYBE_GONE and self._reader._card_left(wait=1.0):
            rc = SCARD_W_REMOVED_CARD
        raise map_error(rc, f"transmitting to the card in {self._reader.name!r}")

    def close(self) -> None:
        """Disconnect, leaving the card as it is.

        Not ``SCARD_RESET_CARD``: resetting a card that already left (before pcscd noticed)
        fails, and with vpcd it wedges the slot so the next card goes unseen. An NTAG 424
        session does not outlive the field anyway, and every flow starts with SELECT, which
        ends any authentication.
        """
        hcard, self._hcard = self._hcard, None
        if hcard is None:
            return
        sc = _require_pyscard()
        rc = sc.SCardDisconnect(hcard, sc.SCARD_LEAVE_CARD) & 0xFFFFFFFF
        if rc not in (SCARD_S_SUCCESS, *CARD_GONE, *CONTEXT_LOST, *READER_GONE):
            log.debug("disconnect from %r: %s", self._reader.name, describe(rc))


class PcscReader:
    """One PC/SC reader slot, watched with our own ``SCardGetStatusChange`` loop.

    ``wait_for_card`` keeps recovering while pcscd restarts or the reader is replugged; it raises
    :class:`ReaderUnavailable` only when the reader is still unreachable when ``timeout`` ends,
    so ``None`` always means "reachable, but no card".
    """

    backend = "pcsc"

    def __init__(self, name: str, *, poll_slice: float = 0.5, retry_delay: float = 0.2) -> None:
        self.name = name
        self._poll_slice = poll_slice
        self._retry_delay = retry_delay
        self._ctx: int | None = None
        self._state = 0  # last known event state, SCARD_STATE_UNAWARE at first
        self._link: PcscCardLink | None = None
        self._closed = threading.Event()
        self._ctx_lock = threading.Lock()
        self._failure: ReaderUnavailable | None = None  # set while pcscd/the reader is gone
        self.recoveries = 0  # contexts re-established after a failure (for logs and tests)

    # --- context handling -------------------------------------------------------------------
    def _context(self) -> int:
        sc = _require_pyscard()
        if self._ctx is None:
            rc, ctx = sc.SCardEstablishContext(sc.SCARD_SCOPE_USER)
            if rc != SCARD_S_SUCCESS:
                raise map_error(rc, "connecting to pcscd")
            with self._ctx_lock:
                self._ctx = ctx
        return self._ctx

    def _drop_context(self) -> None:
        with self._ctx_lock:
            ctx, self._ctx = self._ctx, None
        self._state = 0
        if ctx is not None:
            try:
                _require_pyscard().SCardReleaseContext(ctx)
            except Exception as exc:  # the old context may already be invalid: nothing to free
                log.debug("release of a dead PC/SC context failed: %s", exc)

    def _poll(self, timeout: float, *, fresh: bool = False) -> int:
        """One ``SCardGetStatusChange`` call: the reader's event state (after ``timeout``).

        ``fresh`` asks for the current state at once (``SCARD_STATE_UNAWARE``) instead of
        waiting for a change from the last state we saw.
        """
        sc = _require_pyscard()
        ctx = self._context()
        known = 0 if fresh else self._state
        rc, states = sc.SCardGetStatusChange(
            ctx, max(0, int(timeout * 1000)), [(self.name, known)]
        )
        rc &= 0xFFFFFFFF
        if rc in (SCARD_E_TIMEOUT, SCARD_E_CANCELLED):
            return self._state
        if rc != SCARD_S_SUCCESS:
            raise map_error(rc, f"watching {self.name!r}")
        event = int(states[0][1])
        if event & (sc.SCARD_STATE_UNKNOWN | sc.SCARD_STATE_UNAVAILABLE):
            raise ReaderUnavailable(f"PC/SC reader {self.name!r} is not connected")
        self._state = event & ~sc.SCARD_STATE_CHANGED
        return self._state

    def _watch(self, timeout: float, done: Any) -> int | None:
        """Poll until ``done(state)``; recover from pcscd restarts. ``None`` on timeout."""
        deadline = time.monotonic() + max(0.0, timeout)
        fresh = True  # the field may already be as wanted: ask for the state now, not a change
        while not self._closed.is_set():
            remaining = deadline - time.monotonic()
            try:
                slice_ = 0.0 if fresh else min(self._poll_slice, max(0.0, remaining))
                state = self._poll(slice_, fresh=fresh)
                fresh = False
                if self._failure is not None:
                    log.info("PC/SC reader %r is back", self.name)
                    self.recoveries += 1
                    self._failure = None
                if done(state):
                    return state
            except ReaderUnavailable as exc:
                if self._failure is None:
                    log.warning("%s; retrying", exc)
                self._failure = exc
                self._drop_context()
                time.sleep(min(self._retry_delay, max(0.0, remaining)))
            if time.monotonic() >= deadline:
                break
        if self._failure is not None:
            raise self._failure
        return None

    # --- Reader protocol --------------------------------------------------------------------
    def wait_for_card(self, timeout: float) -> PcscCardLink | None:
        sc = _require_pyscard()
        deadline = time.monotonic() + timeout

        def card_ready(state: int) -> bool:
            return bool(state & sc.SCARD_STATE_PRESENT) and not state & sc.SCARD_STATE_MUTE

        while True:
            state = self._watch(max(0.0, deadline - time.monotonic()), card_ready)
            if state is None:
                return None
            try:
                link = self._connect_card()
            except ReaderUnavailable as exc:
                log.debug("%s; retrying", exc)
                link = None
            if link is not None:
                self._link = link
                return link
            log.debug("card in %r vanished before we connected; waiting", self.name)
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)  # pcscd has not noticed the removal yet: do not spin

    def wait_for_removal(self, timeout: float) -> bool:
        sc = _require_pyscard()
        if self._link is not None:
            self._link.close()
            self._link = None
        state = self._watch(timeout, lambda s: bool(s & sc.SCARD_STATE_EMPTY))
        return state is not None

    def _card_left(self, wait: float) -> bool:
        """After a failed transmit: did the card leave? pcscd notices on its next poll."""
        sc = _require_pyscard()
        try:
            state = self._watch(wait, lambda s: not s & sc.SCARD_STATE_PRESENT)
        except ReaderError:
            return True
        return state is not None

    def feedback(self, accepted: bool) -> None:
        """LED + buzzer as an ``FF 00 40`` pseudo-APDU; every failure is swallowed.

        The daemon closes the card link before giving feedback, so with no open link we
        connect once more just for this APDU (the ACR122U intercepts class FF while a card is
        connected). With no card in the field it goes as an escape on a direct connection.
        """
        apdu = feedback_apdu(accepted)
        link = self._link if self._link is not None and self._link.open else None
        temporary = None
        try:
            if link is None:
                temporary = link = self._connect_card()
            if link is None:
                self._escape(apdu)
                return
            response = link.transceive(apdu)
            if response[-2:-1] != b"\x90":
                log.debug("reader %r refused LED/buzzer control: %s", self.name, response.hex())
        except ReaderError as exc:
            log.debug("no feedback on %r: %s", self.name, exc)
        finally:
            if temporary is not None:
                temporary.close()

    def _connect_card(self) -> PcscCardLink | None:
        """A shared connection to the card in the field; ``None`` when there is none."""
        sc = _require_pyscard()
        rc, hcard, protocol = sc.SCardConnect(
            self._context(),
            self.name,
            sc.SCARD_SHARE_SHARED,
            sc.SCARD_PROTOCOL_T0 | sc.SCARD_PROTOCOL_T1,
        )
        rc &= 0xFFFFFFFF
        if rc == SCARD_S_SUCCESS:
            return PcscCardLink(self, hcard, protocol)
        error = map_error(rc, f"connecting to the card in {self.name!r}")
        if isinstance(error, CardRemoved | CardUnresponsive):
            return None
        if isinstance(error, ReaderUnavailable):
            self._drop_context()
        raise error

    def _escape(self, command: bytes) -> None:
        sc = _require_pyscard()
        rc, hcard, _ = sc.SCardConnect(self._context(), self.name, sc.SCARD_SHARE_DIRECT, 0)
        if rc & 0xFFFFFFFF != SCARD_S_SUCCESS:
            raise map_error(rc, "direct connection for LED control")
        try:
            for code in (IOCTL_CCID_ESCAPE, IOCTL_SMARTCARD_VENDOR_IFD_EXCHANGE):
                rc, _out = sc.SCardControl(hcard, code, list(command))
                if rc & 0xFFFFFFFF == SCARD_S_SUCCESS:
                    return
            raise map_error(rc, "LED/buzzer escape command")
        finally:
            sc.SCardDisconnect(hcard, sc.SCARD_LEAVE_CARD)

    def close(self) -> None:
        self._closed.set()
        if self._link is not None:
            self._link.close()
            self._link = None
        with self._ctx_lock:
            ctx = self._ctx
        if ctx is not None and scard is not None:
            scard.SCardCancel(ctx)  # wakes a thread blocked in SCardGetStatusChange
        self._drop_context()

    def __repr__(self) -> str:
        return f"PcscReader({self.name!r})"
