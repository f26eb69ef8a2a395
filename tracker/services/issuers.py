"""Issuers the tracker follows: add, list, remove, and load one with its secrets opened.

The API key and webhook secret are sealed with :class:`~tracker.issuers.secrets.SecretBox`
before they reach the database and are opened only into :class:`IssuerRecord`, whose
``repr`` hides them; nothing here logs them. A loaded issuer is memoised per process for
:data:`CACHE_SECONDS`, so a webhook burst does not decrypt the secret per request.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlmodel import Session, col

from tracker.db import Database, database_of, write_lock
from tracker.issuers.secrets import SecretBox
from tracker.models import Issuer, IssuerKind, IssuerPublic, Payout, WebhookDelivery

CACHE_SECONDS = 5.0
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


class IssuerExists(ValueError):
    """That issuer name is taken; remove it first or pick another."""


class IssuerNotFound(LookupError):
    """No issuer with that name; `tracker issuers list` shows them."""


class IssuerInvalid(ValueError):
    """The issuer's settings are unusable (the message names the field)."""


@dataclass(frozen=True)
class IssuerRecord:
    id: int
    name: str
    kind: IssuerKind
    url: str
    store_id: str
    api_key: str = field(repr=False)
    webhook_secret: str = field(repr=False)

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or self.url


def _public(row: Issuer) -> IssuerPublic:
    return IssuerPublic(
        name=row.name, kind=IssuerKind(row.kind), url=row.url, store_id=row.store_id,
        created=row.created,
    )


def add_issuer(
    session: Session,
    box: SecretBox,
    *,
    name: str,
    kind: IssuerKind,
    url: str,
    store_id: str,
    api_key: str,
    webhook_secret: str,
) -> IssuerPublic:
    if not _NAME.fullmatch(name):
        raise IssuerInvalid("name: 1-64 of a-z, 0-9, '-' and '_', starting with a letter or digit")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise IssuerInvalid("url: the BTCPay base URL, e.g. https://btcpay.example.com")
    if not store_id or len(store_id) > 100 or "/" in store_id:
        raise IssuerInvalid("store-id: the BTCPay store id (Settings > General)")
    if not api_key or len(api_key) > 500:
        raise IssuerInvalid("api-key: a Greenfield API key with btcpay.store.canviewpayouts")
    if len(webhook_secret) < 16 or len(webhook_secret) > 500:
        raise IssuerInvalid("webhook-secret: at least 16 characters (BTCPay generates one)")
    with write_lock(session):
        if session.execute(sa.select(Issuer.id).where(col(Issuer.name) == name)).first():
            raise IssuerExists(f"issuer {name!r} already exists")
        row = Issuer(
            name=name,
            kind=kind.value,
            url=url.rstrip("/"),
            store_id=store_id,
            api_key_enc=box.seal(api_key),
            webhook_secret_enc=box.seal(webhook_secret),
        )
        session.add(row)
        session.commit()
    return _public(row)


def list_issuers(session: Session) -> list[IssuerPublic]:
    rows = session.execute(sa.select(Issuer).order_by(col(Issuer.name))).scalars()
    return [_public(r) for r in rows]


def remove_issuer(session: Session, *, name: str) -> None:
    """Forget an issuer and its deliveries; its payouts stay (without the issuer link)."""
    with write_lock(session):
        row = session.execute(
            sa.select(Issuer).where(col(Issuer.name) == name)
        ).scalar_one_or_none()
        if row is None:
            raise IssuerNotFound(f"no issuer named {name!r}")
        session.execute(sa.delete(WebhookDelivery).where(col(WebhookDelivery.issuer_pk) == row.id))
        session.execute(
            sa.update(Payout).where(col(Payout.issuer_pk) == row.id).values(issuer_pk=None)
        )
        session.delete(row)
        session.commit()
    database_of(session).state.pop(_CACHE_KEY, None)


def _open(box: SecretBox, row: Issuer) -> IssuerRecord:
    assert row.id is not None
    return IssuerRecord(
        id=row.id,
        name=row.name,
        kind=IssuerKind(row.kind),
        url=row.url,
        store_id=row.store_id,
        api_key=box.open(row.api_key_enc),
        webhook_secret=box.open(row.webhook_secret_enc),
    )


_CACHE_KEY = "issuers.cache"


def load_issuer(session: Session, box: SecretBox, *, name: str) -> IssuerRecord | None:
    """The issuer with its secrets opened (memoised a few seconds), or None."""
    database = database_of(session)
    cache: dict[str, tuple[float, IssuerRecord | None]] = database.shared(_CACHE_KEY, dict)
    now = time.monotonic()
    hit = cache.get(name)
    if hit is not None and now - hit[0] < CACHE_SECONDS:
        return hit[1]
    row = session.execute(sa.select(Issuer).where(col(Issuer.name) == name)).scalar_one_or_none()
    record = _open(box, row) if row is not None else None
    with _cache_lock:
        if len(cache) > 1000:  # names from the URL: bound what a scan can fill
            cache.clear()
        cache[name] = (now, record)
    return record


_cache_lock = threading.Lock()

#: :func:`cached_issuer`'s answer when the memo has nothing fresh for that name.
NOT_CACHED: Any = object()


def cached_issuer(database: Database, name: str) -> IssuerRecord | None:
    """The memoised issuer (or memoised None) if still fresh, else :data:`NOT_CACHED`: lets
    the webhook skip a thread hop for the common case without touching the database."""
    cache: dict[str, tuple[float, IssuerRecord | None]] = database.shared(_CACHE_KEY, dict)
    hit = cache.get(name)
    if hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
        return hit[1]
    return NOT_CACHED


def all_issuers(session: Session, box: SecretBox) -> list[IssuerRecord]:
    rows = session.execute(sa.select(Issuer).order_by(col(Issuer.name))).scalars()
    return [_open(box, r) for r in rows]
