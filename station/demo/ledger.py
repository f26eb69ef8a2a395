"""The demo wallet's book-keeping (a TEST PEER): wallets, invoices, internal payments.

Why apart from the HTTP layer: every rule that decides whether money moves (expired, already
paid, not ours, not enough balance, the wrong key) lives here as plain Python with one lock, so
it can be read in one sitting and the HTTP app only parses and renders. State is in memory and,
when a path is given, saved to a JSON file after each change (written to a temporary file, synced
and renamed, so a crash leaves the old or the new file, never half of one).

Nothing here is Lightning: a payment only moves balance between wallets of this one instance.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import bolt11

from .signer import new_preimage, sign_invoice

MAX_AMOUNT_SAT = 100_000_000  # 1 BTC of play money per invoice is plenty
MAX_MEMO_BYTES = 639  # what fits in a BOLT11 description tag
MIN_EXPIRY_S = 1
MAX_EXPIRY_S = 7 * 24 * 3600
DEFAULT_EXPIRY_S = 3600
MAX_BOLT11_CHARS = 2000
MAX_INVOICES = 20_000  # settled and expired invoices beyond this are forgotten, oldest first
_HEX64 = re.compile(r"[0-9a-f]{64}")
_KEY = re.compile(r"[\x21-\x7e]{8,200}")


class WalletError(Exception):
    """A request the wallet refuses; ``status`` is the HTTP status the app answers with."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class WalletConfig:
    """One demo wallet: a name, two keys (LNbits-style invoice key and admin key), a balance."""

    name: str
    invoice_key: str = field(repr=False)
    admin_key: str = field(repr=False)
    balance_msat: int = 0
    id: str = ""

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 64:
            raise ValueError("a demo wallet needs a name of 1..64 characters")
        for key in (self.invoice_key, self.admin_key):
            if not _KEY.fullmatch(key):
                raise ValueError(f"demo wallet {self.name!r}: keys are 8..200 printable characters")
        if self.invoice_key == self.admin_key:
            raise ValueError(f"demo wallet {self.name!r}: invoice and admin keys must differ")
        if self.balance_msat < 0:
            raise ValueError(f"demo wallet {self.name!r}: balance cannot be negative")

    @property
    def wallet_id(self) -> str:
        return self.id or re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-") or "wallet"


@dataclass
class _Wallet:
    id: str
    name: str
    invoice_key: str = field(repr=False)
    admin_key: str = field(repr=False)
    balance_msat: int


@dataclass
class _Invoice:
    payment_hash: str
    wallet_id: str
    bolt11: str
    amount_msat: int
    memo: str
    preimage: str = field(repr=False)
    created_at: float
    expires_at: float
    paid_at: float | None = None
    paid_by: str | None = None


@dataclass(frozen=True)
class Caller:
    """Who a request comes from: a wallet, and whether it used the admin key."""

    wallet_id: str
    admin: bool


class Ledger:
    """All wallets of one demo wallet instance, behind one lock."""

    def __init__(
        self,
        wallets: Iterable[WalletConfig],
        *,
        state_path: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._path = state_path
        self._wallets: dict[str, _Wallet] = {}
        for cfg in wallets:
            wid = cfg.wallet_id
            if wid in self._wallets:
                raise ValueError(f"two demo wallets share the id {wid!r}")
            self._wallets[wid] = _Wallet(
                wid, cfg.name, cfg.invoice_key, cfg.admin_key, cfg.balance_msat
            )
        if not self._wallets:
            raise ValueError("the demo wallet needs at least one wallet")
        keys = [k for w in self._wallets.values() for k in (w.invoice_key, w.admin_key)]
        if len(set(keys)) != len(keys):
            raise ValueError("every demo wallet key must be unique")
        self._invoices: dict[str, _Invoice] = {}
        if state_path is not None and state_path.exists():
            self._load(state_path)

    # --- who is calling -------------------------------------------------------------------

    def caller(self, key: str | None) -> Caller:
        """The wallet a key belongs to, or WalletError 401."""
        if key:
            for wallet in self._wallets.values():
                if hmac.compare_digest(key.encode(), wallet.admin_key.encode()):
                    return Caller(wallet.id, True)
                if hmac.compare_digest(key.encode(), wallet.invoice_key.encode()):
                    return Caller(wallet.id, False)
        raise WalletError(401, "Invalid key: send a wallet's invoice or admin key in X-Api-Key.")

    # --- operations -----------------------------------------------------------------------

    def create_invoice(
        self, caller: Caller, amount_sat: int, memo: str, expiry_s: int
    ) -> dict[str, Any]:
        if not 1 <= amount_sat <= MAX_AMOUNT_SAT:
            raise WalletError(400, f"amount must be 1..{MAX_AMOUNT_SAT} sat")
        if len(memo.encode()) > MAX_MEMO_BYTES:
            raise WalletError(400, f"memo must be at most {MAX_MEMO_BYTES} bytes")
        if not MIN_EXPIRY_S <= expiry_s <= MAX_EXPIRY_S:
            raise WalletError(400, f"expiry must be {MIN_EXPIRY_S}..{MAX_EXPIRY_S} seconds")
        now = self._clock()
        preimage, payment_hash = new_preimage()
        text = sign_invoice(
            amount_msat=amount_sat * 1000,
            payment_hash=payment_hash,
            description=memo,
            expiry_s=expiry_s,
            created_at=int(now),
        )
        record = _Invoice(
            payment_hash=payment_hash,
            wallet_id=caller.wallet_id,
            bolt11=text,
            amount_msat=amount_sat * 1000,
            memo=memo,
            preimage=preimage,
            created_at=now,
            expires_at=int(now) + expiry_s,
        )
        with self._lock:
            self._make_room(now)
            self._invoices[payment_hash] = record
            self._save()
        return self._incoming_view(record)

    def pay(self, caller: Caller, text: str) -> dict[str, Any]:
        if not caller.admin:
            raise WalletError(401, "Invoice (or Admin) key required: paying needs the admin key.")
        if not text or len(text) > MAX_BOLT11_CHARS:
            raise WalletError(400, "BOLT11 string is invalid or not given.")
        try:
            decoded = bolt11.decode(text)
        except Exception as exc:  # the decoder raises many types for a malformed string
            raise WalletError(400, "BOLT11 string is invalid or not given.") from exc
        if decoded.amount_msat is None:
            raise WalletError(400, "Amountless invoices are not supported.")
        now = self._clock()
        if decoded.date + decoded.expiry <= now:
            raise WalletError(400, "Invoice expired.")
        with self._lock:
            record = self._invoices.get(decoded.payment_hash.lower())
            if record is None or record.bolt11.lower() != text.lower():
                raise WalletError(
                    520,
                    "Unknown invoice: the demo wallet pays only invoices it made itself "
                    "(it has no Lightning node and cannot route).",
                )
            if record.paid_at is not None:
                raise WalletError(520, "Invoice already paid.")
            if record.wallet_id == caller.wallet_id:
                raise WalletError(400, "A wallet cannot pay its own invoice.")
            payer = self._wallets[caller.wallet_id]
            if payer.balance_msat < record.amount_msat:
                raise WalletError(520, "Insufficient balance.")
            payer.balance_msat -= record.amount_msat
            self._wallets[record.wallet_id].balance_msat += record.amount_msat
            record.paid_at = now
            record.paid_by = caller.wallet_id
            self._save()
        return {
            "payment_hash": record.payment_hash,
            "checking_id": record.payment_hash,
            "status": "success",
            "amount": -record.amount_msat,
            "fee": 0,
            "memo": record.memo,
            "wallet_id": caller.wallet_id,
        }

    def payment(self, caller: Caller, payment_hash: str) -> dict[str, Any]:
        """The LNbits-style status of a payment, for the wallet that made or paid it only."""
        payment_hash = payment_hash.lower()
        with self._lock:
            record = self._invoices.get(payment_hash) if _HEX64.fullmatch(payment_hash) else None
            if record is None or caller.wallet_id not in (record.wallet_id, record.paid_by):
                raise WalletError(404, "Payment does not exist.")
            paid = record.paid_at is not None
            details = (
                self._incoming_view(record)
                if caller.wallet_id == record.wallet_id
                else self._outgoing_view(record)
            )
            return {"paid": paid, "preimage": record.preimage if paid else None, "details": details}

    def wallet(self, caller: Caller) -> dict[str, Any]:
        with self._lock:
            wallet = self._wallets[caller.wallet_id]
            return {"id": wallet.id, "name": wallet.name, "balance": wallet.balance_msat}

    def balance_msat(self, wallet_id: str) -> int:
        with self._lock:
            return self._wallets[wallet_id].balance_msat

    # --- views ----------------------------------------------------------------------------

    def _incoming_view(self, record: _Invoice) -> dict[str, Any]:
        return {
            "payment_hash": record.payment_hash,
            "payment_request": record.bolt11,
            "bolt11": record.bolt11,
            "checking_id": record.payment_hash,
            "amount": record.amount_msat,
            "fee": 0,
            "memo": record.memo,
            "status": self._status(record),
            "expiry": _iso(record.expires_at),
            "time": _iso(record.created_at),
            "wallet_id": record.wallet_id,
        }

    def _outgoing_view(self, record: _Invoice) -> dict[str, Any]:
        view = self._incoming_view(record)
        view.update(amount=-record.amount_msat, wallet_id=record.paid_by, status="success")
        return view

    def _status(self, record: _Invoice) -> str:
        if record.paid_at is not None:
            return "success"
        return "failed" if record.expires_at <= self._clock() else "pending"

    # --- bounds and persistence (called with the lock held) -------------------------------

    def _make_room(self, now: float) -> None:
        if len(self._invoices) < MAX_INVOICES:
            return
        done = [
            h for h, r in self._invoices.items() if r.paid_at is not None or r.expires_at <= now
        ]
        for payment_hash in done[: len(self._invoices) - MAX_INVOICES + 1]:
            del self._invoices[payment_hash]
        if len(self._invoices) >= MAX_INVOICES:
            raise WalletError(429, "Too many open invoices; let some expire first.")

    def _save(self) -> None:
        if self._path is None:
            return
        state = {
            "version": 1,
            "note": "demo wallet state (TEST PEER, play money)",
            "balances": {w.id: w.balance_msat for w in self._wallets.values()},
            "invoices": [asdict(r) for r in self._invoices.values()],
        }
        directory = self._path.parent
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self._path.name}.", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(state, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self._path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _load(self, path: Path) -> None:
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            balances = state["balances"]
            invoices = [_Invoice(**item) for item in state["invoices"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"the demo wallet state file {path} is unreadable ({type(exc).__name__}); "
                "delete it to start afresh"
            ) from exc
        for wid, balance in balances.items():
            if wid in self._wallets and isinstance(balance, int):
                self._wallets[wid].balance_msat = balance
        for record in invoices:
            if record.wallet_id in self._wallets:
                self._invoices[record.payment_hash] = record


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
