"""A real LNbits (from PyPI, FakeWallet, SQLite, offline) as a test peer on loopback.

Why a real one: the station's LNbits invoice source and the demo issuer's "pay from LNbits"
path must meet LNbits' actual answers (status codes, key names, its 520 on failed payments),
not our idea of them. ``prepare_lnbits.py`` builds the venv; this module starts the server
from it, sets it up through LNbits' own API, and stops it.

Use it in pytest by re-exporting the session fixture::

    from peers.lnbits import lnbits_peer as lnbits_peer

    def test_x(lnbits_peer):
        lnbits_peer.base_url, lnbits_peer.merchant.invoice_key, lnbits_peer.payer.admin_key

or outside pytest with ``with LnbitsPeer.start() as peer: …``.

Setting up: a fresh data folder means a "first install"; ``PUT /api/v1/auth/first_install``
gives the super user a password and an access token, which creates the wallets
(``POST /api/v1/wallet``) and credits the payer (``PUT /users/api/v1/balance``, the super
user's top-up). FakeWallet settles payments between wallets of the same instance, so the payer
really pays the merchant's invoice and the merchant sees it paid with the preimage.

Offline: no extension manifests, no default extensions, no price aggregator, no exchange-rate
providers; and a dead proxy for any HTTP client that would still try (loopback excepted).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from components import require

from . import prepare_lnbits

START_TIMEOUT_S = 90.0  # a cold start on a loaded 2-core machine took about 10 s
STOP_TIMEOUT_S = 10.0
PAYER_FUNDS_SAT = 1_000_000
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
_DEAD_PROXY = "http://127.0.0.1:9"  # discard port: anything that tries the internet fails fast


class LnbitsStartError(RuntimeError):
    """LNbits did not come up or could not be set up; the message carries its log tail."""


@dataclass(frozen=True)
class LnbitsWallet:
    """One LNbits wallet as an API client sees it. Keys are secrets: never log them."""

    id: str
    name: str
    invoice_key: str = field(repr=False)
    admin_key: str = field(repr=False)


@dataclass
class LnbitsPeer:
    """A running LNbits: where it answers, two wallets, and its log."""

    base_url: str
    merchant: LnbitsWallet
    payer: LnbitsWallet
    log_path: Path
    version: str = prepare_lnbits.LNBITS_VERSION
    _access_token: str = field(default="", repr=False)
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    # -- using it --------------------------------------------------------------------------

    def client(self) -> httpx.Client:
        """A plain httpx client on the peer (no proxies from the environment)."""
        return httpx.Client(base_url=self.base_url, trust_env=False, timeout=10.0)

    def create_wallet(self, name: str, fund_sat: int = 0) -> LnbitsWallet:
        """A further wallet of the super user, credited with ``fund_sat`` (tests that need a
        balance nobody else touches)."""
        with self.client() as http:
            wallet = _create_wallet(http, self._access_token, name)
            if fund_sat:
                _top_up(http, self._access_token, wallet.id, fund_sat)
        return wallet

    def fund(self, wallet: LnbitsWallet, sat: int) -> None:
        """Credit ``wallet`` with ``sat`` through the super user's top-up."""
        with self.client() as http:
            _top_up(http, self._access_token, wallet.id, sat)

    def balance_msat(self, wallet: LnbitsWallet) -> int:
        """The wallet's balance as ``GET /api/v1/wallet`` reports it (millisatoshi)."""
        with self.client() as http:
            resp = http.get("/api/v1/wallet", headers={"X-Api-Key": wallet.invoice_key})
            resp.raise_for_status()
            return int(resp.json()["balance"])

    def log_tail(self, lines: int = 200) -> str:
        """The last lines of LNbits' own log (stdout and stderr)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no LNbits log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def start(cls, venv: Path | None = None) -> Iterator[LnbitsPeer]:
        """Start LNbits from the prepared venv, set it up, yield it, stop it."""
        venv = venv or prepare_lnbits.venv_path()
        stamp = prepare_lnbits.read_stamp(venv)
        if not prepare_lnbits.is_ready(venv) or stamp is None:
            raise LnbitsStartError(f"the LNbits venv {venv} is not prepared: {PREPARE_HINT}")
        with tempfile.TemporaryDirectory(prefix="lnbits-peer-") as tmp:
            proc, base_url, log_path = _launch(venv, Path(str(stamp["site_packages"])), Path(tmp))
            try:
                peer = _set_up(base_url, log_path, proc)
                peer._process = proc
                yield peer
            finally:
                _stop(proc)


PREPARE_HINT = "run `python3 tests/peers/prepare_lnbits.py` (`.ci/run` does)"


def unavailable_reason() -> str | None:
    """Why the LNbits peer cannot run here, or None when its venv is ready."""
    venv = prepare_lnbits.venv_path()
    if prepare_lnbits.is_ready(venv):
        return None
    return f"LNbits {prepare_lnbits.LNBITS_VERSION} venv not prepared at {venv}: {PREPARE_HINT}"


@pytest.fixture(scope="session")
def lnbits_peer(request: pytest.FixtureRequest) -> Iterator[LnbitsPeer]:
    """The session's LNbits peer; skips (or fails with REQUIRE_LNBITS=1) when not prepared.
    When any test of the session failed, LNbits' log tail is printed at the end."""
    reason = unavailable_reason()
    require("lnbits", reason is None, reason or "")
    failed_before = request.session.testsfailed
    with LnbitsPeer.start() as peer:
        yield peer
        if request.session.testsfailed > failed_before:
            _report(request, f"LNbits log ({peer.log_path})", peer.log_tail())


# -- internals ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _environment(data: Path, port: int) -> dict[str, str]:
    """LNbits' settings for a hermetic, offline instance. Inherited LNBITS_* and proxy
    variables are dropped so a developer's own LNbits settings cannot leak in."""
    dropped = {"SUPER_USER", "HOST", "PORT", "DEBUG", "FIRST_INSTALL_TOKEN"}
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith(("LNBITS_", *_PROXY_VARS)) and k.upper() not in dropped
    }
    return {
        **keep,
        "LNBITS_DATA_FOLDER": str(data / "data"),
        "LNBITS_EXTENSIONS_PATH": str(data / "extensions"),
        "LNBITS_BACKEND_WALLET_CLASS": "FakeWallet",
        "LNBITS_ADMIN_UI": "true",  # the super user and its top-up endpoint
        "LNBITS_BASEURL": f"http://127.0.0.1:{port}/",
        "LNBITS_EXTENSIONS_DEFAULT_INSTALL": "[]",
        "LNBITS_EXTENSIONS_MANIFESTS": "[]",
        "LNBITS_WASM_EXTENSIONS_MANIFESTS": "[]",
        "LNBITS_PRICE_AGGREGATOR_ENABLED": "false",
        "LNBITS_EXCHANGE_RATE_PROVIDERS": "[]",
        "LNBITS_RATE_LIMIT_NO": "1000000",  # benchmarks and e2e tests must not meet a 429
        "ENABLE_LOG_TO_FILE": "false",  # our own log file below is enough
        "HTTP_PROXY": _DEAD_PROXY,
        "HTTPS_PROXY": _DEAD_PROXY,
        "ALL_PROXY": _DEAD_PROXY,
        "http_proxy": _DEAD_PROXY,
        "https_proxy": _DEAD_PROXY,
        "all_proxy": _DEAD_PROXY,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


def _launch(venv: Path, site: Path, tmp: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    """Start ``lnbits`` and wait until it answers HTTP; retry on a port taken meanwhile."""
    log_path = tmp / "lnbits.log"
    for attempt in range(3):
        port = _free_port()
        data = tmp / f"run{attempt}"
        data.mkdir()
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [str(venv / "bin" / "lnbits"), "--host", "127.0.0.1", "--port", str(port)],
                cwd=site,  # LNbits serves ./lnbits/static relative to the working directory
                env=_environment(data, port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # `lnbits` forks its server: stop the whole group
            )
        base_url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(base_url, proc, log_path)
            return proc, base_url, log_path
        except LnbitsStartError:
            _stop(proc)
            if "address already in use" not in log_path.read_text(errors="replace").lower():
                raise
    raise LnbitsStartError(f"LNbits found no free port in 3 tries:\n{_tail(log_path)}")


def _wait_until_up(base_url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    with httpx.Client(base_url=base_url, trust_env=False, timeout=2.0) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise LnbitsStartError(
                    f"LNbits exited with {proc.returncode} while starting:\n{_tail(log_path)}"
                )
            with contextlib.suppress(httpx.TransportError):
                # 307 to /first_install on a fresh data folder, 200 afterwards: both mean up
                if http.get("/api/v1/health").status_code in (200, 307):
                    return
            time.sleep(0.1)
    raise LnbitsStartError(
        f"LNbits did not answer within {START_TIMEOUT_S:.0f} s:\n{_tail(log_path)}"
    )


def _set_up(base_url: str, log_path: Path, proc: subprocess.Popen[bytes]) -> LnbitsPeer:
    """First install (super user password → access token), two wallets, payer funded."""
    password = secrets.token_urlsafe(18)
    try:
        with httpx.Client(base_url=base_url, trust_env=False, timeout=10.0) as http:
            resp = http.put(
                "/api/v1/auth/first_install",
                json={"username": "peeradmin", "password": password, "password_repeat": password},
            )
            _expect(resp, 200, "first install")
            token = str(resp.json()["access_token"])
            merchant = _create_wallet(http, token, "merchant")
            payer = _create_wallet(http, token, "payer")
            _top_up(http, token, payer.id, PAYER_FUNDS_SAT)
    except (httpx.HTTPError, LnbitsStartError, KeyError, ValueError) as exc:
        _stop(proc)
        raise LnbitsStartError(f"setting LNbits up failed: {exc}\n{_tail(log_path)}") from exc
    return LnbitsPeer(base_url, merchant, payer, log_path, _access_token=token)


def _create_wallet(http: httpx.Client, token: str, name: str) -> LnbitsWallet:
    resp = http.post(
        "/api/v1/wallet", json={"name": name}, headers={"Authorization": f"Bearer {token}"}
    )
    _expect(resp, 200, f"creating wallet {name!r}")
    body = resp.json()
    return LnbitsWallet(
        id=body["id"], name=body["name"], invoice_key=body["inkey"], admin_key=body["adminkey"]
    )


def _top_up(http: httpx.Client, token: str, wallet_id: str, sat: int) -> None:
    resp = http.put(
        "/users/api/v1/balance",
        json={"id": wallet_id, "amount": sat},
        headers={"Authorization": f"Bearer {token}"},
    )
    _expect(resp, 200, "topping up a wallet")


def _expect(resp: httpx.Response, status: int, what: str) -> None:
    if resp.status_code != status:
        raise LnbitsStartError(f"{what}: HTTP {resp.status_code} {resp.text[:500]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to LNbits' process group (``lnbits`` and the server it forked), SIGKILL to
    whatever is left after STOP_TIMEOUT_S."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None and not _group_alive(proc.pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=STOP_TIMEOUT_S)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _tail(log_path: Path, lines: int = 80) -> str:
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no LNbits log)"


def _report(request: pytest.FixtureRequest, title: str, text: str) -> None:
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("-", title)
        reporter.write_line(text)
