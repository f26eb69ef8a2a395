"""``station charge`` on this machine's reader: the station built from its settings, one
charge armed, the daemon run until that charge has an outcome."""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import logging
import sys
import threading
from typing import Any

from station.cli import EXIT_BAD_INPUT, EXIT_ENVIRONMENT
from station.cli.charge import exit_code, show
from station.cli.emulated import check_emulated_options
from station.cli.options import BadInput
from station.cli.run import _open_reader, _verifier

log = logging.getLogger("station.charge")


def tty_pin(charge: Any, attempt: int) -> str | None:
    """Ask on the terminal (never echoed); nobody to ask without one."""
    if not sys.stdin.isatty():
        return None
    return getpass.getpass(f"Card PIN (try {attempt} of 3): ").strip() or None


class RefuseWhenTapRefused:
    """The daemon's ``on_tap``: when the one tap is refused before any claim (forged, replayed,
    blocked, foreign host), the charge ends with that reason instead of waiting for a card."""

    def __init__(self) -> None:
        self._target: tuple[Any, str] | None = None

    def charge(self, registry: Any, charge_id: str) -> None:
        self._target = (registry, charge_id)

    def __call__(self, result: Any) -> None:
        if self._target is not None and not result.accepted:
            registry, charge_id = self._target
            registry.refuse(charge_id, f"tap refused: {result.reason}")


def _keys_given(args: argparse.Namespace) -> bool:
    return bool(args.k1 or args.k2 or args.issuer_key or args.keys)


def charge_local(args: argparse.Namespace) -> int:
    from station.app import build_station
    from station.claim.charge import ChargeError
    from station.daemon import ReaderSlot, setup_logging
    from station.invoices import InvoiceSourceMisconfigured
    from station.readers.base import ReaderError
    from station.settings import ReaderSpec, SettingsError, load_settings

    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        raise BadInput(str(exc)) from None
    setup_logging(settings.log_format, level=logging.WARNING)
    verifier = _verifier(args) if _keys_given(args) else None
    if verifier is None and not settings.keys.configured and not settings.accept_foreign_cards:
        raise BadInput(
            "no card keys: give --issuer-key, --keys or --k1/--k2 (or [keys] in the settings), "
            "or set accept_foreign_cards to let the issuer alone verify the card"
        )
    backend = args.backend or settings.readers[0].backend
    name = args.reader if args.reader is not None else settings.readers[0].name
    settings = dataclasses.replace(settings, readers=(ReaderSpec(backend, name),))
    ns = argparse.Namespace(**{**vars(args), "backend": backend, "reader": name})
    check_emulated_options(ns)
    try:
        reader, save = _open_reader(ns)
    except ReaderError as exc:
        print(f"station charge: reader problem: {exc}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except (ImportError, LookupError, OSError, ValueError) as exc:
        print(f"station charge: cannot open a {backend} reader: {exc}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    label = f"{backend}:{name or '*'}"
    refuse = RefuseWhenTapRefused()
    try:
        station = build_station(
            settings, verifier=verifier, slots=[ReaderSlot(label, open=lambda: reader)],
            pin_prompt=tty_pin, poll=0.05, on_tap=refuse,
        )
    except (InvoiceSourceMisconfigured, ValueError) as exc:
        reader.close()
        print(f"station charge: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    charging = station.charging
    assert charging is not None
    try:
        charge = charging.registry.arm(args.amount_sats, args.memo, reader=label,
                                       timeout=args.timeout)
    except ChargeError as exc:
        station.shutdown(flush_timeout=0)
        raise BadInput(str(exc)) from None

    refuse.charge(charging.registry, charge.id)
    station.forwarder.start()
    charging.start()
    daemon = threading.Thread(target=station.daemon.run, name="daemon", daemon=True)
    daemon.start()
    try:
        for event in charge.follow(args.timeout + 120.0):
            if event is not None and event.kind == "outcome":
                break
    finally:
        station.daemon.stop()
        daemon.join(timeout=10)
        left = station.shutdown(flush_timeout=3.0)
        if save is not None:
            save()
    if left:
        print(f"station charge: {left} records wait in {settings.outbox_path} for the tracker; "
              "`station run` delivers them", file=sys.stderr)
    outcome = {**charge.public(), "fault": charge.fault}
    show(outcome, args.json)
    return exit_code(outcome)
