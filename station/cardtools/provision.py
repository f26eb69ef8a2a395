"""``station card provision``: program a blank card, read it back, verify it; keep its keys."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from station.cardtools import classify, procedure
from station.cardtools.errors import BadInput, Refused
from station.cardtools.journal import Journal
from station.cardtools.keysource import read_json
from station.cardtools.reader import ReaderChoice, card_on_reader
from station.cardtools.redact import redact_url
from station.cardtools.rekey import Target, plan
from station.emulator.state import save_state
from station.ntag424 import keys, ndef
from station.ntag424.errors import UsageError

Rng = Callable[[int], bytes]


@dataclass(frozen=True)
class ProvisionResult:
    uid: bytes
    url: str = field(repr=False)  # a fresh p/c: never in a log
    counter: int
    key_version: int
    card_keys: keys.KeySet = field(repr=False)
    lnurlw: str
    dry_run: bool = False
    state: str = ""
    """What classification found before provisioning (blank, partially provisioned...)."""

    def to_dict(self) -> dict[str, Any]:
        """Key-free summary for ``--json``."""
        return {
            "uid": self.uid.hex().upper(),
            "url": redact_url(self.url),
            "counter": self.counter,
            "key_version": self.key_version,
            "lnurlw": self.lnurlw,
            "found": self.state,
            "dry_run": self.dry_run,
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


PROVISIONABLE = (classify.BLANK,)


def provision(
    choice: ReaderChoice,
    template: str,
    card_keys: keys.KeySet | Callable[[bytes], keys.KeySet],
    key_version: int,
    *,
    rng: Rng = os.urandom,
    journal: Journal | None = None,
    resume: bool = False,
    force: bool = False,
    reason: str = "",
    dry_run: bool = False,
    before_write: Callable[[bytes, keys.KeySet], None] | None = None,
    plan_out: Callable[[str], None] | None = None,
) -> ProvisionResult:
    """Classify the card (no authentication), then program it if its state allows.

    A blank card is provisioned; a partially provisioned one only with ``resume``; one of ours
    that is configured only with ``force`` (and a ``reason``); anything else is refused
    without a single authentication. ``before_write(uid, keys)`` runs before the first APDU
    that changes the card (the key store saves random keys there). ``dry_run`` classifies,
    sends ``plan_out`` each step it would take, and changes nothing.
    """
    if force and not reason.strip():
        raise BadInput("--force needs --reason TEXT (it is journaled)")
    journal = journal if journal is not None else Journal(None)
    layout = ndef.bolt_card_layout(template)

    def keys_for(uid: bytes) -> keys.KeySet:
        ks = card_keys(uid) if callable(card_keys) else card_keys
        return dataclasses.replace(ks, version=key_version)

    with card_on_reader(choice) as raw:
        link = procedure.Counter(raw)
        found = procedure.classify(link, keys_for)
        _allowed(found, resume=resume, force=force)
        assert found.uid is not None
        new = keys_for(found.uid)
        target = Target((new.k0, new.k1, new.k2, new.k3, new.k4), key_version, layout)
        if dry_run:
            for step in plan(found, target):
                (plan_out or print)(step)
            return ProvisionResult(found.uid, "", 0, key_version, new, template.split("?")[0],
                                   dry_run=True, state=found.state)
        if before_write is not None:
            before_write(found.uid, new)
        out = procedure.act(link, found, target, journal, "provision", rng,
                            template=template, reason=reason)
    lnurlw = template.split("?", 1)[0]
    return ProvisionResult(out.uid, out.readback.url, out.readback.counter, key_version, new,
                           lnurlw, state=found.state)


def _allowed(found: classify.Classification, *, resume: bool, force: bool) -> None:
    state = found.state
    if found.uid is None:
        raise Refused(f"card is not blank: its UID is hidden ({found.detail})")
    if state == classify.BLANK:
        return
    if state == classify.PARTIAL_PROVISION:
        if resume:
            return
        raise Refused(
            f"card {found.uid.hex().upper()} is partially provisioned ({found.detail}): run "
            "`station card provision --resume` with the same keys, or wipe it"
        )
    if state == classify.CONFIGURED:
        if force:
            return
        raise Refused(
            f"card is not blank: it is ours and configured ({found.detail}); "
            "give --force --reason TEXT to reprogram it, or wipe the card first"
        )
    if state == classify.PARTIAL_WIPE:
        raise Refused(f"card is not blank: a wipe was cut off ({found.detail}); run "
                      "`station card wipe` to finish it, then provision")
    raise Refused(f"card is not blank ({state}: {found.detail}); wipe the card first with its "
                  "keys; no authentication was tried")


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
