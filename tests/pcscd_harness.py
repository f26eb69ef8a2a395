"""Start, stop and restart the real pcscd with Debian's vpcd virtual reader, for tests and bench.

Why a harness instead of ``systemctl start pcscd``: CI containers and developer machines often run
no systemd, and Debian's default ``/etc/reader.conf.d`` may hold other virtual drivers. We start
``pcscd -f -c DIR`` with a private reader.conf.d that holds only vpcd, so the reader list is
exactly ``Virtual PCD 00 00`` / ``00 01``.

Facts this code relies on (measured, see /work/shared/notes/reader-test-stack.md):

* pcscd 1.9.9 ignores ``PCSCLITE_CSOCK_NAME``: one pcscd per machine, socket in ``/run/pcscd``.
  If one already runs *and* vpcd listens, we reuse it and never stop it.
* A TCP connect to vpcd's port counts as a card insertion, so readiness is read from
  ``/proc/net/tcp`` (state 0A = LISTEN), never probed with a connect.
* After a SIGKILL, stale ``pcscd.pid``/``pcscd.comm`` block the next start; they are removed
  only when the pid they name is dead. ``pcscd.pid`` ends in a NUL byte.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

VPCD_LIB = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
VPCD_PORT = 35963  # 0x8C7B: slot "Virtual PCD 00 00"; 35964 is slot "00 01"
RUN_DIR = Path("/run/pcscd")
PID_FILE = RUN_DIR / "pcscd.pid"
COMM_FILE = RUN_DIR / "pcscd.comm"

READER_CONF = """\
FRIENDLYNAME "Virtual PCD"
DEVICENAME   /dev/null:0x{port:X}
LIBPATH      {lib}
CHANNELID    0x{port:X}
"""


def unavailable_reason() -> str | None:
    """Why the pcscd + vpcd stack cannot run here, or ``None`` when it can."""
    if shutil.which("pcscd") is None:
        return "pcscd is not installed (apt-get install pcscd)"
    if not VPCD_LIB.exists():
        return f"{VPCD_LIB} missing (apt-get install vsmartcard-vpcd)"
    if importlib.util.find_spec("smartcard") is None:
        return "pyscard is not installed (pip install '.[pcsc]')"
    if os.geteuid() != 0 and not os.access(
        RUN_DIR if RUN_DIR.exists() else RUN_DIR.parent, os.W_OK
    ):
        return f"starting pcscd needs write access to {RUN_DIR} (run as root)"
    return None


def port_listening(port: int) -> bool:
    """True when some socket LISTENs on ``port`` (IPv4 or IPv6), read from /proc/net/tcp*."""
    wanted = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[1].endswith(wanted) and fields[3] == "0A":
                return True
    return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as dead.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def running_pid() -> int | None:
    """The pid of a live pcscd according to its pid file, else ``None``."""
    try:
        raw = PID_FILE.read_bytes().rstrip(b"\0\n ")
        pid = int(raw)
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def clean_stale_files() -> None:
    """Remove pid/socket files left by a pcscd that died without cleaning up."""
    if running_pid() is None:
        for path in (PID_FILE, COMM_FILE):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.01)
    raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what}")


@dataclass
class Pcscd:
    """One pcscd instance: either ours (we stop it) or a reused one (left running)."""

    port: int = VPCD_PORT
    pid: int | None = None
    owned: bool = False
    conf_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pcscd-conf-")))
    _proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Reuse a running pcscd that serves vpcd, or start our own and wait until it is ready."""
        pid = running_pid()
        if pid is not None:
            if port_listening(self.port):
                self.pid, self.owned = pid, False
                return
            raise RuntimeError(
                f"a pcscd without the vpcd reader already runs (pid {pid}); only one pcscd can run "
                "per machine: stop it (systemctl stop pcscd.socket pcscd) and rerun"
            )
        clean_stale_files()
        # pcscd parses *every* file in its config dir, so the log must live outside it.
        readers_d = self.conf_dir / "reader.conf.d"
        readers_d.mkdir(exist_ok=True)
        (readers_d / "vpcd").write_text(READER_CONF.format(port=self.port, lib=VPCD_LIB))
        log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            ["pcscd", "-f", "-c", str(readers_d)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.pid, self.owned = self._proc.pid, True
        try:
            _wait(lambda: COMM_FILE.exists() and port_listening(self.port), timeout, "pcscd + vpcd")
        except TimeoutError:
            self.stop()
            raise

    @property
    def log_path(self) -> Path:
        """pcscd's own log (stdout/stderr of ``pcscd -f``), handy when a test fails."""
        return self.conf_dir / "pcscd.log"

    def stop(self, timeout: float = 8.0) -> None:
        """Stop pcscd by PID (SIGTERM, then SIGKILL) and clear its stale files."""
        pid = self.pid
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        try:
            _wait(lambda: self._dead(pid), timeout, f"pcscd {pid} to exit")
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait(lambda: self._dead(pid), 2.0, f"pcscd {pid} to die")
        self.pid = None
        self._proc = None
        clean_stale_files()

    def _dead(self, pid: int) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            return self._proc.poll() is not None
        return not _pid_alive(pid)

    def restart(self) -> None:
        """Stop whichever pcscd runs (ours or reused) and start our own in its place."""
        if self.pid is None:
            self.pid = running_pid()
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop pcscd if we started it; leave a reused one alone."""
        if self.owned:
            self.stop()
        shutil.rmtree(self.conf_dir, ignore_errors=True)
