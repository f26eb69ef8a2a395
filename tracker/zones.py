"""Operators' time zones: which one applies, and the days it draws.

Times are stored in UTC; an operator sees them in their own zone (``User.timezone``), else
the server's (``TRACKER_TIMEZONE``, else the system's), so "today" on the dashboard and a
date typed into a filter mean the operator's day, not the UTC one.
"""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones


class UnknownZone(ValueError):
    """Not an IANA time zone name this system knows (e.g. ``Europe/Berlin``)."""


def parse_zone(name: str) -> ZoneInfo:
    text = name.strip()
    if not text or len(text) > 64 or ".." in text or text.startswith("/"):
        raise UnknownZone(f"unknown time zone {name!r}; use a name like Europe/Berlin or UTC")
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise UnknownZone(
            f"unknown time zone {name!r}; use a name like Europe/Berlin or UTC"
        ) from None


def system_zone_name() -> str:
    """The machine's zone: ``TZ``, /etc/timezone, the /etc/localtime link; else UTC."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    with contextlib.suppress(OSError):
        candidates.append(Path("/etc/timezone").read_text().strip())
    try:
        target = str(Path("/etc/localtime").resolve())
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    for name in candidates:
        try:
            parse_zone(name)
            return name
        except UnknownZone:
            continue
    return "UTC"


def server_zone_name(configured: str) -> str:
    """``TRACKER_TIMEZONE`` when set (it must be valid), else the system's zone."""
    if configured.strip():
        parse_zone(configured)
        return configured.strip()
    return system_zone_name()


@cache
def zone_names() -> tuple[str, ...]:
    """Every zone the system knows, for the operator's choice."""
    return tuple(sorted(available_timezones() | {"UTC"}))


def day_start(day: date, zone: tzinfo) -> datetime:
    """Midnight of ``day`` in ``zone``, as a UTC moment."""
    return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)


def today_start(zone: tzinfo, *, now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    return day_start(now.astimezone(zone).date(), zone)


def next_day_start(day: date, zone: tzinfo) -> datetime:
    return day_start(day + timedelta(days=1), zone)
