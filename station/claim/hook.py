"""The pipeline's after-accept hook: the next accepted tap on a reader pays the charge armed
there; a tap with nothing armed stays a tap."""

from __future__ import annotations

from dataclasses import replace

from station.claim.charge import Charge, ChargeRegistry
from station.claim.runner import ChargeRunner, TappedCard
from station.readers.base import CardLink
from station.tap.result import TapResult


class ChargeHook:
    """``AfterAccept`` for :class:`~station.tap.pipeline.TapPipeline`."""

    def __init__(self, registry: ChargeRegistry, runner: ChargeRunner) -> None:
        self.registry = registry
        self.runner = runner

    def __call__(self, result: TapResult, link: CardLink | None, reader: str) -> TapResult:
        if result.url is None or result.uid is None:
            return result
        charge = self.registry.take(reader)
        if charge is None:
            return result
        self.runner.run(charge, tapped_card(result))
        return replace(result, claim=charge.public())


def tapped_card(result: TapResult) -> TappedCard:
    assert result.url is not None
    key = result.key or f"{result.uid}:{result.counter}"
    return TappedCard(
        url=result.url, tap_key=key, uid=result.uid,
        counter=result.counter if result.verified else None, card_id=result.card_id,
        verified=result.verified, host=result.host,
    )


def pos_pin(charge: Charge, attempt: int) -> str | None:
    """The POS page hands the PIN over (``POST /charges/{id}/pin``); wait a minute for it."""
    return charge.take_pin(timeout=60.0)
