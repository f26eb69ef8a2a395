"""BTCPay payout webhooks: check ``BTCPay-Sig`` and parse the event. Bytes in, event out.

BTCPay signs the exact bytes it sends: ``BTCPay-Sig: sha256=<lowercase hex
HMAC-SHA256(utf8(secret), body)>`` (``WebhookSender``). So the signature is checked over the
raw body, before any parsing: a body re-serialised by a proxy (other spacing, key order)
fails, as it should. The comparison runs in constant time.

The event carries no destination or amount, only ids and ``payoutState``; and the BTCPay
version we read labels every payout event ``PayoutCreated`` whatever happened. So the
``type`` is only logged: the tracker fetches the payout by id and believes that.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

SIGNATURE_HEADER = "BTCPay-Sig"


class WebhookRejected(ValueError):
    """The webhook body is not a BTCPay event we can use (the message says why)."""


def signature(secret: str, body: bytes) -> str:
    """The header value BTCPay would send for ``body``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """True only when ``header`` is the signature of exactly these bytes."""
    if not header or not secret:
        return False
    return hmac.compare_digest(signature(secret, body).encode(), header.strip().encode())


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    delivery_id: str
    type: str
    store_id: str | None
    payout_id: str | None
    pull_payment_id: str | None
    payout_state: str | None
    is_redelivery: bool
    original_delivery_id: str | None


def _field(data: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise WebhookRejected(f"the event has no {name}")
        return None
    if not isinstance(value, str) or not value or len(value) > 100:
        raise WebhookRejected(f"{name} must be text of at most 100 characters")
    return value


def parse_event(body: bytes) -> WebhookEvent:
    """The event in a (verified) body; :class:`WebhookRejected` when it is not one."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookRejected("the body is not JSON") from None
    if not isinstance(data, dict):
        raise WebhookRejected("the body is not a JSON object")
    return WebhookEvent(
        delivery_id=_field(data, "deliveryId", required=True) or "",
        type=_field(data, "type", required=True) or "",
        store_id=_field(data, "storeId"),
        payout_id=_field(data, "payoutId"),
        pull_payment_id=_field(data, "pullPaymentId"),
        payout_state=_field(data, "payoutState"),
        is_redelivery=data.get("isRedelivery") is True,
        original_delivery_id=_field(data, "originalDeliveryId"),
    )
