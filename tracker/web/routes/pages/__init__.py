"""The operator pages, one router per resource (dashboard, payouts, taps, cards, stations,
live events, help) plus sign-in. Routes only parse the query, call one service function and render
a template; error pages are in ``errors``."""

from fastapi import APIRouter

from tracker.web import auth
from tracker.web.routes.pages import (
    account,
    audit,
    cards,
    dashboard,
    help,
    live,
    payouts,
    stations,
    taps,
)
from tracker.web.routes.pages.errors import install_error_pages

router = APIRouter(include_in_schema=False)
router.include_router(auth.router)
for _resource in (dashboard, payouts, taps, cards, stations, live, account, audit, help):
    router.include_router(_resource.router)

__all__ = ["install_error_pages", "router"]
