"""Prepare the LNbits test peer: a venv of its own with one pinned LNbits release from PyPI.

LNbits cannot share the project's venv: it pins pydantic 1 and httpx 0.27, where the station
and tracker use pydantic 2 and a newer httpx. So it gets its own venv, by default
``.peers/lnbits-venv`` in the repository (git-ignored), or wherever ``LNBITS_VENV`` points.

Run it as ``python3 tests/peers/prepare_lnbits.py``; ``.ci/run`` does. A second run with the
venv already holding the pinned release returns at once: the venv carries a stamp that names
what was installed, and the test fixture (``peers.lnbits``) reads the same stamp to decide
whether the peer is ready or the tests that need it must skip.

Only the standard library is used here, so any Python 3.11 can run it before ``make venv``.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: The release the tests run against. 1.6.2 installs from PyPI on Python 3.11 and starts
#: offline with FakeWallet. Change it here only; the stamp makes the next run reinstall.
LNBITS_VERSION = "1.6.2"

#: What goes into the venv. LNbits 1.6.2 depends on bolt11, which breaks with bitstring 5
#: ("cannot import name 'ConstBitStream'"), and its own requirements do not cap bitstring.
REQUIREMENTS = (f"lnbits=={LNBITS_VERSION}", "bitstring<5")

REPO = Path(__file__).resolve().parents[2]
STAMP_NAME = ".boltcard-peer.json"


def venv_path() -> Path:
    """Where the LNbits venv lives: ``$LNBITS_VENV`` or ``.peers/lnbits-venv`` in the repo."""
    override = os.environ.get("LNBITS_VENV")
    return Path(override).expanduser().resolve() if override else REPO / ".peers" / "lnbits-venv"


def read_stamp(venv: Path) -> dict[str, object] | None:
    """The stamp of ``venv``, or None when it has none (never prepared, or a run broke off)."""
    try:
        data = json.loads((venv / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_ready(venv: Path) -> bool:
    """True when ``venv`` holds the pinned release (the stamp matches and ``lnbits`` is there)."""
    stamp = read_stamp(venv)
    if stamp is None or stamp.get("requirements") != list(REQUIREMENTS):
        return False
    return (venv / "bin" / "lnbits").is_file() and Path(str(stamp.get("site_packages"))).is_dir()


def _run(cmd: list[str], what: str, cwd: str | None = None) -> None:
    """Run ``cmd`` quietly; on failure show its whole output and stop with what to do."""
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"prepare_lnbits: {what} failed (exit {proc.returncode}): {' '.join(cmd)}")


def prepare(venv: Path, python: str) -> bool:
    """Create or refresh ``venv``; return True when something had to be installed."""
    if is_ready(venv):
        return False
    if venv.exists():
        if not (venv / "pyvenv.cfg").is_file() and any(venv.iterdir()):
            raise SystemExit(f"prepare_lnbits: {venv} exists and is not a venv; set LNBITS_VENV")
        shutil.rmtree(venv)  # a half-built or outdated venv: start clean rather than patch it
    venv.parent.mkdir(parents=True, exist_ok=True)
    _run([python, "-m", "venv", str(venv)], "creating the venv")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    _run([*pip, "--disable-pip-version-check", *REQUIREMENTS], f"installing {REQUIREMENTS}")
    # importing lnbits pulls in bolt11 and its bitstring: a broken pin shows here, not mid-test.
    # The import writes ./data/.lnbits_auth_key, so it runs in a scratch folder.
    with tempfile.TemporaryDirectory(prefix="lnbits-import-") as scratch:
        python_in_venv = str(venv / "bin" / "python")
        _run([python_in_venv, "-c", "import lnbits"], "importing the installed lnbits", scratch)
    stamp = {"requirements": list(REQUIREMENTS), "base_python": python, **_site(venv)}
    (venv / STAMP_NAME).write_text(json.dumps(stamp, indent=2) + "\n")
    return True


def _site(venv: Path) -> dict[str, str]:
    """The venv's site-packages folder: LNbits must be started with it as working directory
    (it mounts ``lnbits/static`` relative to the current directory)."""
    found = sorted((venv / "lib").glob("python3*/site-packages"))
    return {"site_packages": str(found[0])} if found else {}


def main() -> int:
    venv = venv_path()
    python = os.environ.get("LNBITS_PYTHON", sys.executable)
    started = time.monotonic()
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs at once (CI and a developer) must not race
        installed = prepare(venv, python)
    took = time.monotonic() - started
    verb = "installed" if installed else "already present"
    print(f"LNbits test peer {LNBITS_VERSION}: {verb} in {venv} ({took:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
