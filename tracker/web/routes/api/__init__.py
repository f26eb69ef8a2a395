"""JSON API under ``/api/v1``, one router per resource. Routes only parse and render; every
query lives in ``tracker.services``; shared dependencies are in ``tracker.web.deps``."""

from fastapi import APIRouter

from tracker.web.routes.api import (
    audit,
    card_registry,
    cards,
    claims,
    payouts,
    stations,
    stats,
    tap_batch,
    taps,
)

router = APIRouter()
for _resource in (
    taps, tap_batch, claims, card_registry, cards, payouts, stats, stations, audit
):
    router.include_router(_resource.router)

__all__ = ["router"]
