"""What an emulated card keeps across power cycles, and how it is saved to disk.

:class:`CardState` is the chip's non-volatile memory: UID, the five application keys and their
versions, the three files with their settings and SDM read counters, the failed-authentication
counters and the SetConfiguration options. Everything volatile (selection, session, chained
frames) lives in :class:`~station.emulator.card.EmulatedCard` and is lost on a power cycle.

A demo card must keep its SDMReadCtr between runs, or every tap after a restart would look like
a replay; :func:`save_state` therefore writes atomically (temporary file, fsync, rename) so a
crash mid-write leaves the previous state intact. The file holds keys: it is created 0600.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from station.emulator.files import KEY_COUNT, DataFile, decode_settings, factory_files
from station.emulator.status import Reject

STATE_FORMAT: Final = "boltcard-station/emulated-ntag424/1"
DEFAULT_FAILED_CTR_LIMIT: Final = 1000  # datasheet §10.5.1 Table 50, option 0Ah defaults
DEFAULT_FAILED_CTR_DECR: Final = 10


class StateError(ValueError):
    """A saved card state cannot be read: wrong format, missing field, bad hex.

    Delete the file to start again from a factory-fresh card, or restore a backup.
    """


@dataclass
class CardState:
    uid: bytes
    keys: list[bytes] = field(default_factory=lambda: [bytes(16)] * KEY_COUNT)
    key_versions: list[int] = field(default_factory=lambda: [0] * KEY_COUNT)
    files: dict[int, DataFile] = field(default_factory=factory_files)
    tot_fail_ctr: list[int] = field(default_factory=lambda: [0] * KEY_COUNT)
    failed_ctr_enabled: bool = True
    failed_ctr_limit: int = DEFAULT_FAILED_CTR_LIMIT
    failed_ctr_decr: int = DEFAULT_FAILED_CTR_DECR
    consecutive_failures: int = 0
    auth_delay_pending: int = 0
    random_id: bool = False
    sm_config: int = 0
    pdcap2_5: int = 0
    pdcap2_6: int = 0
    strong_modulation: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "uid": self.uid.hex().upper(),
            "keys": [k.hex().upper() for k in self.keys],
            "key_versions": list(self.key_versions),
            "files": {
                str(n): {
                    "iso_id": f"{f.iso_id:04X}",
                    "settings": f.settings.encode().hex().upper(),
                    "data": bytes(f.data).hex().upper(),
                    "sdm_read_ctr": f.sdm_read_ctr,
                }
                for n, f in sorted(self.files.items())
            },
            "tot_fail_ctr": list(self.tot_fail_ctr),
            "failed_ctr_enabled": self.failed_ctr_enabled,
            "failed_ctr_limit": self.failed_ctr_limit,
            "failed_ctr_decr": self.failed_ctr_decr,
            "consecutive_failures": self.consecutive_failures,
            "auth_delay_pending": self.auth_delay_pending,
            "random_id": self.random_id,
            "sm_config": self.sm_config,
            "pdcap2_5": self.pdcap2_5,
            "pdcap2_6": self.pdcap2_6,
            "strong_modulation": self.strong_modulation,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CardState:
        if not isinstance(raw, dict) or raw.get("format") != STATE_FORMAT:
            raise StateError(f"not an emulated card state (expected format {STATE_FORMAT!r})")
        try:
            files = {}
            for number, f in raw["files"].items():
                data = bytearray(bytes.fromhex(f["data"]))
                # Persisted settings were valid when written; skip the "limit > counter" rule
                # (a card may legitimately sit at its limit) by checking against -1.
                settings = decode_settings(bytes.fromhex(f["settings"]), len(data), -1)
                files[int(number)] = DataFile(
                    int(number), int(f["iso_id"], 16), data, settings, int(f["sdm_read_ctr"])
                )
            state = cls(
                uid=bytes.fromhex(raw["uid"]),
                keys=[bytes.fromhex(k) for k in raw["keys"]],
                key_versions=[int(v) for v in raw["key_versions"]],
                files=files,
                tot_fail_ctr=[int(v) for v in raw["tot_fail_ctr"]],
                failed_ctr_enabled=bool(raw["failed_ctr_enabled"]),
                failed_ctr_limit=int(raw["failed_ctr_limit"]),
                failed_ctr_decr=int(raw["failed_ctr_decr"]),
                consecutive_failures=int(raw["consecutive_failures"]),
                auth_delay_pending=int(raw["auth_delay_pending"]),
                random_id=bool(raw["random_id"]),
                sm_config=int(raw["sm_config"]),
                pdcap2_5=int(raw["pdcap2_5"]),
                pdcap2_6=int(raw["pdcap2_6"]),
                strong_modulation=bool(raw["strong_modulation"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError, Reject) as exc:
            raise StateError(f"corrupt emulated card state: {type(exc).__name__}") from None
        if len(state.uid) != 7 or len(state.keys) != KEY_COUNT or any(
            len(k) != 16 for k in state.keys
        ):
            raise StateError("corrupt emulated card state: UID must be 7 bytes, 5 keys of 16")
        if sorted(state.files) != [1, 2, 3]:
            raise StateError("corrupt emulated card state: files 1, 2 and 3 are required")
        _check_ranges(raw)
        return state


def _ints(raw: dict[str, Any], name: str, count: int, top: int) -> None:
    values = raw[name]
    if not isinstance(values, list) or len(values) != count:
        raise StateError(f"corrupt emulated card state: {name} must list {count} numbers")
    for v in values:
        _int(v, name, top)


def _int(value: Any, name: str, top: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        raise StateError(f"corrupt emulated card state: {name} must be an integer 0..{top}")


def _check_ranges(raw: dict[str, Any]) -> None:
    """What a chip's EEPROM cannot hold is refused here, not met later as a crash or as a
    "successful" command on a card that could never exist (a key version of 999)."""
    _ints(raw, "key_versions", KEY_COUNT, 0xFF)
    _ints(raw, "tot_fail_ctr", KEY_COUNT, 0xFFFF)
    for name, top in (
        ("failed_ctr_limit", 0xFFFF),
        ("failed_ctr_decr", 0xFFFF),
        ("consecutive_failures", 0xFFFFFFFF),
        ("auth_delay_pending", 0xFFFF),
        ("sm_config", 0xFF),
        ("pdcap2_5", 0xFF),
        ("pdcap2_6", 0xFF),
    ):
        _int(raw[name], name, top)
    for name in ("failed_ctr_enabled", "random_id", "strong_modulation"):
        if not isinstance(raw[name], bool):
            raise StateError(f"corrupt emulated card state: {name} must be true or false")
    for number, f in raw["files"].items():
        _int(f["sdm_read_ctr"], f"files.{number}.sdm_read_ctr", 0xFFFFFF)


def save_state(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write ``state`` (from ``EmulatedCard.to_state()``) as JSON, atomically, mode 0600."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(state, fh, indent=1, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(target.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a state file written by :func:`save_state`; :class:`StateError` if it is not one."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise StateError(f"{path}: not UTF-8 text (not an emulated card state)") from None
    except json.JSONDecodeError as exc:
        raise StateError(f"{path}: not JSON ({exc.msg})") from None
    except OSError as exc:
        raise StateError(f"{path}: cannot read it ({exc.strerror or type(exc).__name__})") from None
    CardState.from_dict(raw)  # validate now, with the file name in the error
    return dict(raw)
