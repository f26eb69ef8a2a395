"""Limits on what the tracker accepts from outside: text without control characters, moments
and numbers inside the ranges both databases (and Python's ``datetime``) can hold.

Why: input the tracker can never store must be refused as 422 (a page: 400) at the door.
Otherwise it reaches the database and comes back as a 500 — PostgreSQL refuses NUL in text,
a lone surrogate cannot be encoded, ``0001-01-01T00:00:00+14:00`` overflows when converted to
UTC, an id past 2^63 overflows ``BIGINT`` — and a station retries a 500 forever.

:class:`CheckedInput` checks every string field (recursively through dicts and lists, so a
JSON ``proof`` is covered) of the models stations and operators send;
:func:`check_moment` and the ``MAX_*`` bounds serve query parameters, cursors and pages.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationInfo, field_validator
from sqlmodel import SQLModel

#: Largest value of a signed 64-bit column (ids, amounts in msat).
MAX_DB_INT = 2**63 - 1
#: Largest amount anyone can mean: all bitcoin there will ever be, in sats.
MAX_SATS = 21_000_000 * 100_000_000
MAX_MSAT = MAX_SATS * 1000
#: Largest page number of an offset-paged list (cards); far beyond any real list.
MAX_PAGE = 1_000_000
#: Moments the tracker stores or filters on: a station clock reset to the epoch is still
#: stored; year 9999 or year 1 is a broken input.
MIN_MOMENT = datetime(1970, 1, 1, tzinfo=UTC)
MAX_MOMENT = datetime(2100, 1, 1, tzinfo=UTC)

#: Fields where line breaks and tabs are fine (free text an operator or an issuer wrote).
MULTILINE_FIELDS = frozenset({"notes", "reason", "issuer_reason", "memo"})

# C0 controls, DEL, C1 controls, and lone surrogates (JSON "\ud800" decodes to one; no
# database can store it as UTF-8).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def text_problem(value: str, *, multiline: bool = False) -> str | None:
    """Why ``value`` cannot be stored (a control character), or None when it is fine."""
    found = (_CONTROL_MULTILINE if multiline else _CONTROL).search(value)
    if found is None:
        return None
    return f"control character U+{ord(found.group()):04X} is not allowed"


def check_text(value: str, *, multiline: bool = False) -> str:
    """``value`` unchanged, or ValueError naming the control character."""
    problem = text_problem(value, multiline=multiline)
    if problem is not None:
        raise ValueError(problem)
    return value


def _check_nested(value: Any, *, multiline: bool) -> None:
    if isinstance(value, str):
        check_text(value, multiline=multiline)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_nested(key, multiline=False)
            _check_nested(item, multiline=multiline)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_nested(item, multiline=multiline)
    elif (
        isinstance(value, int)
        and not isinstance(value, bool)
        and not -MAX_DB_INT - 1 <= value <= MAX_DB_INT
    ):
        raise ValueError("number out of range")


def check_moment(value: datetime) -> datetime:
    """``value`` (naive taken as UTC) if it lies in [MIN_MOMENT, MAX_MOMENT); else ValueError.
    The conversion to UTC happens here, inside the check, because it is what overflows."""
    try:
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError("moment out of range (1970 to 2099)") from None
    if not MIN_MOMENT <= moment < MAX_MOMENT:
        raise ValueError("moment out of range (1970 to 2099)")
    return value


def check_optional_moment(value: datetime | None) -> datetime | None:
    return None if value is None else check_moment(value)


class CheckedInput(SQLModel):
    """Base of the models that come from outside: no control characters in any string field
    (line breaks allowed in :data:`MULTILINE_FIELDS`), no moment outside the stored range,
    no integer beyond 64 bits."""

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, datetime):
            return check_moment(value)
        _check_nested(value, multiline=info.field_name in MULTILINE_FIELDS)
        return value
