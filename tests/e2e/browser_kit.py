"""What every browser test of the tracker's pages needs, in one place.

Debian's Chromium is required (a test skips saying what to install, and fails instead under
``REQUIRE_BROWSER=1``); every page records the URLs the browser asked for (so a test can
prove nothing left 127.0.0.1) and every script error or Content-Security-Policy refusal (so
a page that works only with inline script fails); and an operator signs in through the real
login form.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components import require

CHROMIUM = "/usr/bin/chromium"
# As the machine's notes say: without the background-networking flags Chromium tries hosts
# this closed network refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
PASSWORD = "correct horse battery"
WIDE = {"width": 1400, "height": 900}
PHONE = {"width": 390, "height": 844}


def playwright_available() -> bool:
    return importlib.util.find_spec("playwright") is not None


def require_browser() -> None:
    """Chromium and Playwright, or a skip (a failure under REQUIRE_BROWSER=1) saying which."""
    require(
        "browser",
        Path(CHROMIUM).exists() and shutil.which(CHROMIUM) is not None,
        f"{CHROMIUM} not installed (apt install chromium)",
    )
    require("browser", playwright_available(), "python package playwright missing")


@dataclass
class Watched:
    """A page, the URLs its context requested, and the errors its scripts met."""

    page: Any
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def watched_page(
    context: Any, *, requests: list[str] | None = None, errors: list[str] | None = None
) -> Watched:
    """A new page of ``context`` that records requests and script/CSP errors (into the given
    lists, so that several contexts of one test can share them)."""
    seen = Watched(page=context.new_page(), requests=requests if requests is not None else [],
                   errors=errors if errors is not None else [])
    context.on("request", lambda r: seen.requests.append(r.url))
    seen.page.set_default_timeout(15_000)
    seen.page.on("pageerror", lambda exc: seen.errors.append(str(exc)))
    seen.page.on(
        "console",
        lambda m: seen.errors.append(m.text) if "Content Security Policy" in m.text else None,
    )
    return seen


def sign_in(page: Any, base: str, username: str = "alice", password: str = PASSWORD) -> None:
    """Through the login form, onto the dashboard."""
    from playwright.sync_api import expect

    page.goto(base + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Dashboard")
