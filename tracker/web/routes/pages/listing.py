"""What the list pages share: the lenient filter form, sortable headers, paging, export links.

Filters are parsed leniently: a bad value becomes a message on the page instead of a bare
422, because the person who typed it is looking at that page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from urllib.parse import urlencode

from fastapi import HTTPException, Request

from tracker import zones
from tracker.models import PayoutState, TapOutcome, normalise_uid
from tracker.models.checks import MAX_SATS, check_moment
from tracker.services import stations as station_service
from tracker.services.filters import InvalidCursor, ListFilter
from tracker.services.sorting import Sort, UnknownSort, allowed, default_descending, parse_sort
from tracker.web.zone import operator_zone

PAGE_SIZE = 50

@dataclass
class Filters:
    """A parsed filter form: the service filter, the raw values to refill the form, problems."""

    flt: ListFilter
    params: dict[str, str]
    errors: list[str]
    cursor: str | None

    @property
    def filtered(self) -> bool:
        """Whether a filter (not just a sort) may be hiding rows."""
        return any(k not in SORT_KEYS for k in self.params)


_FILTER_KEYS = (
    "state",
    "outcome",
    "card",
    "station",
    "since",
    "until",
    "min_sats",
    "max_sats",
    "q",
    "sort",
    "dir",
)
SORT_KEYS = ("sort", "dir")


def _sentence(exc: Exception) -> str:
    text = str(exc)
    return f"{text[:1].upper()}{text[1:]}."


def parse_moment(text: str, *, end_of_day: bool, zone: tzinfo = UTC) -> datetime:
    """``YYYY-MM-DD`` (a whole day in the operator's ``zone``; ``until`` includes that day)
    or an ISO 8601 moment (without an offset: in ``zone`` too)."""
    if len(text) == 10:
        day = date.fromisoformat(text)
        if end_of_day:
            day += timedelta(days=1)
        return zones.day_start(day, zone)
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def parse_filters(request: Request, *, kind: str) -> Filters:
    raw = {k: request.query_params.get(k, "").strip() for k in _FILTER_KEYS}
    errors: list[str] = []
    values: dict[str, Any] = {}
    if raw["state"] and kind == "payouts":
        try:
            values["state"] = PayoutState(raw["state"])
        except ValueError:
            errors.append(f"Unknown state {raw['state']!r}.")
    if raw["outcome"] and kind == "taps":
        try:
            values["outcome"] = TapOutcome(raw["outcome"])
        except ValueError:
            errors.append(f"Unknown outcome {raw['outcome']!r}.")
    if raw["card"]:
        try:
            values["card"] = normalise_uid(raw["card"])
        except ValueError:
            errors.append("Card must be a UID in hex, e.g. 04A1B2C3D4E5F6.")
    if raw["station"]:
        values["station"] = raw["station"]
    for key, end in (("since", False), ("until", True)):
        if raw[key]:
            try:
                moment = parse_moment(raw[key], end_of_day=end, zone=operator_zone(request))
                values[key] = check_moment(moment)
            except (ValueError, OverflowError):
                errors.append(
                    f"{key.capitalize()} must be a date like 2026-11-26, between 1970 and 2099."
                )
    if kind == "payouts":
        for key in ("min_sats", "max_sats"):
            if raw[key]:
                try:
                    number = int(raw[key])
                    if not 0 <= number <= MAX_SATS:
                        raise ValueError
                    values[key] = number
                except ValueError:
                    errors.append(
                        "Amounts must be whole, non-negative numbers of sats "
                        "(at most 21 million BTC)."
                    )
    if raw["q"]:
        values["q"] = raw["q"][:200]
    try:
        order = parse_sort(kind, raw["sort"] or None, raw["dir"] or None)
        values["sort"] = None if order.is_default else order
    except UnknownSort as exc:
        errors.append(_sentence(exc))
    params = {k: v for k, v in raw.items() if v}
    cursor = request.query_params.get("cursor") or None
    return Filters(ListFilter(**values), params, errors, cursor)


def export_params(flt: ListFilter, *, kind: str) -> dict[str, str]:
    """The API's query parameters for ``flt``: moments as ISO 8601, ``until`` exclusive.

    Built from the parsed filter, not the form, so "To 2026-11-26" (the whole day, as the page
    shows it) reaches the export as ``until=2026-11-27T00:00:00+00:00``.
    """
    params: dict[str, str] = {}
    if kind == "payouts" and flt.state is not None:
        params["state"] = flt.state.value
    if kind == "taps" and flt.outcome is not None:
        params["outcome"] = flt.outcome.value
    if flt.card:
        params["card"] = flt.card
    if flt.station:
        params["station"] = flt.station
    if flt.since is not None:
        params["since"] = flt.since.isoformat()
    if flt.until is not None:
        params["until"] = flt.until.isoformat()
    if kind == "payouts" and flt.min_sats is not None:
        params["min_sats"] = str(flt.min_sats)
    if kind == "payouts" and flt.max_sats is not None:
        params["max_sats"] = str(flt.max_sats)
    if flt.q:
        params["q"] = flt.q
    if flt.sort is not None:
        params["sort"], params["dir"] = flt.sort.column, flt.sort.dir
    return params


def page_sort(request: Request, kind: str) -> Sort:
    """``?sort=&dir=`` of a list without a filter form (cards, stations): an unknown value is
    a 400 page naming the allowed ones."""
    try:
        return parse_sort(
            kind, request.query_params.get("sort") or None, request.query_params.get("dir") or None
        )
    except UnknownSort as exc:
        raise HTTPException(status_code=400, detail=_sentence(exc)) from None


def clear_href(path: str, params: dict[str, str]) -> str:
    """The list without its filters, in the same order."""
    kept = {k: v for k, v in params.items() if k in SORT_KEYS}
    return f"{path}?{urlencode(kept)}" if kept else path


def sort_links(path: str, params: dict[str, str], current: Sort) -> dict[str, dict[str, Any]]:
    """For each sortable column of the list: the header's link (the other filters kept, the
    page reset), whether it is the current order and which way. A click on the current
    column reverses it; on another column it starts with that column's natural direction."""
    keep = {k: v for k, v in params.items() if k not in SORT_KEYS}
    links: dict[str, dict[str, Any]] = {}
    for column in allowed(current.kind):
        is_current = column == current.column
        descending = (
            not current.descending if is_current else default_descending(current.kind, column)
        )
        query = urlencode({**keep, "sort": column, "dir": "desc" if descending else "asc"})
        links[column] = {
            "href": f"{path}?{query}",
            "current": is_current,
            "descending": current.descending if is_current else None,
        }
    return links


def _export_links(kind: str, flt: ListFilter) -> dict[str, str]:
    """Links to the API's export endpoints carrying exactly the filters shown on the page."""
    query = urlencode(export_params(flt, kind=kind))
    suffix = f"?{query}" if query else ""
    return {
        "csv": f"/api/v1/{kind}/export.csv{suffix}",
        "json": f"/api/v1/{kind}/export.json{suffix}",
    }


def list_page(
    session: Any, filters: Filters, kind: str, lister: Callable[..., tuple[list[Any], str | None]]
) -> tuple[list[Any], dict[str, Any]]:
    """One filtered page for the taps or payouts page, and the template values both share
    (filters, errors, paging, station choices, export links). A broken cursor is shown as an
    error on the page, not raised."""
    items: list[Any] = []
    next_cursor = None
    if not filters.errors:
        try:
            items, next_cursor = lister(
                session, flt=filters.flt, cursor=filters.cursor, limit=PAGE_SIZE
            )
        except InvalidCursor as exc:
            filters.errors.append(str(exc))
    return items, {
        "filters": filters.params,
        "errors": filters.errors,
        "next_cursor": next_cursor,
        "first_page": filters.cursor is None,
        "filtered": filters.filtered,
        "clear_href": clear_href(f"/{kind}", filters.params),
        "sorting": sort_links(f"/{kind}", filters.params, filters.flt.order(kind)),
        "stations": station_service.station_names(session),
        "export": _export_links(kind, filters.flt),
    }
