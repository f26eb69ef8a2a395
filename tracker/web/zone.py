"""The time zone of the request's operator (their own choice, else the server's)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from fastapi import Request

from tracker import zones
from tracker.web.auth import current_user


def server_zone(request: Request) -> ZoneInfo:
    cached = getattr(request.app.state, "tracker_zone", None)
    if cached is None:
        cached = zones.parse_zone(zones.server_zone_name(request.app.state.settings.timezone))
        request.app.state.tracker_zone = cached
    return cached


def operator_zone(request: Request) -> ZoneInfo:
    user = current_user(request)
    name = getattr(user, "timezone", None) if user is not None else None
    if name:
        try:
            return zones.parse_zone(name)
        except zones.UnknownZone:
            pass  # a zone the system no longer knows: fall back, never fail a page
    return server_zone(request)
