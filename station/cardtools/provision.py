"""``station card provision``: program a blank card, read it back, verify it; keep its keys."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from station.cardtools.errors import BadInput, Refused, card_error
from station.cardtools.keysource import read_json
from station.cardtools.reader import ReaderChoice, card_on_reader, run_flow
from station.emulator.state import save_state
from station.ntag424 import flows, keys, ndef
from station.ntag424.errors import Ntag424Error, UsageError

Rng = Callable[[int], bytes]


@dataclass(frozen=True)
class ProvisionResult:
    uid: bytes
    url: str = field(repr=False)  # a fresh p/c: never in a log
    counter: int
    key_version: int
    card_keys: keys.KeySet = field(repr=False)
    lnurlw: str

    def to_dict(self) -> dict[str, Any]:
        """Key-free summary for ``--json``."""
        return {
            "uid": self.uid.hex().upper(),
            "url": self.url,
            "counter": self.counter,
            "key_version": self.key_version,
            "lnurlw": self.lnurlw,
        }

    def card_response(self) -> dict[str, Any]:
        """The ``new_bolt_card_response`` for this card (holds keys: ``--print-keys`` only)."""
        out = keys.new_bolt_card_response(self.card_keys, self.lnurlw)
        out.update(uid=self.uid.hex(), version=self.key_version)
        return out


def url_template(text: str) -> str:
    """``lnurlw://host/path`` (placeholders added) or a full template with ``p=…&c=…``."""
    if not text.startswith("lnurlw://"):
        raise BadInput("--url-template must start with lnurlw://")
    template = text if "p=" in text else ndef.bolt_card_template(text)
    try:
        ndef.bolt_card_layout(template)
    except UsageError as exc:
        raise BadInput(f"--url-template: {exc}") from None
    return template


def provision(
    choice: ReaderChoice,
    template: str,
    card_keys: keys.KeySet | Callable[[bytes], keys.KeySet],
    key_version: int,
    *,
    rng: Rng = os.urandom,
) -> ProvisionResult:
    """Program a blank card, read it back and verify it; a card that is not blank is refused."""
    chosen: list[keys.KeySet] = []

    def keys_for(uid: bytes) -> keys.KeySet:
        ks = card_keys(uid) if callable(card_keys) else card_keys
        chosen.append(ks)
        return ks

    with card_on_reader(choice) as link:
        try:
            report = run_flow(
                link, flows.provision_bolt_card(template, keys_for, rng, key_version=key_version)
            )
        except flows.CardNotBlank as exc:
            raise Refused(f"card is not blank: {exc}") from None
        except flows.ReadbackMismatch as exc:
            raise Refused(f"read-back failed, do not hand this card out: {exc}") from None
        except Ntag424Error as exc:
            raise Refused(f"provisioning failed: {card_error(exc)}") from None
    lnurlw = template.split("?", 1)[0]
    return ProvisionResult(report.uid, report.url, report.counter, key_version, chosen[-1], lnurlw)


def check_keys_file(path: Path) -> dict[str, Any] | None:
    """The existing keys file at ``path`` (``None`` if there is none); refuse anything else.

    Called before a card is programmed, so a typo in ``--keys-out`` cannot leave a card whose
    random keys were never saved.
    """
    if not path.exists():
        if not path.parent.is_dir():
            raise BadInput(f"--keys-out {path}: the directory does not exist")
        return None
    existing = read_json(path, "--keys-out")
    if not isinstance(existing, dict) or not isinstance(existing.get("cards"), list):
        raise BadInput(f'--keys-out {path}: not a keys file with a "cards" list')
    return existing


def add_to_keys_file(path: Path, entry: dict[str, Any]) -> None:
    """Add (or replace, by UID) one card in a station keys file ``{"cards": [...]}``.

    Each entry is a ``new_bolt_card_response`` plus ``uid`` and ``version``, which is what
    ``station sun verify --keys FILE`` and ``station card check --keys FILE`` read. Written
    atomically, mode 0600: it holds keys.
    """
    existing = check_keys_file(path)
    if existing is not None:
        uid = str(entry["uid"]).lower()
        cards = [c for c in existing["cards"] if str(c.get("uid", "")).lower() != uid]
        save_state(path, {**existing, "cards": [*cards, entry]})
        return
    save_state(path, {"cards": [entry]})
