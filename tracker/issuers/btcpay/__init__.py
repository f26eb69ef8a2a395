"""BTCPay Server: the Greenfield payouts client and the payout webhooks (BTCPay-Sig)."""

from tracker.issuers.btcpay.client import (
    GreenfieldClient,
    GreenfieldError,
    GreenfieldNotFound,
    GreenfieldPayout,
    GreenfieldProtocolError,
    GreenfieldRefused,
    GreenfieldUnauthorized,
    GreenfieldUnavailable,
)
from tracker.issuers.btcpay.webhooks import WebhookEvent, WebhookRejected, parse_event, verify

__all__ = [
    "GreenfieldClient",
    "GreenfieldError",
    "GreenfieldNotFound",
    "GreenfieldPayout",
    "GreenfieldProtocolError",
    "GreenfieldRefused",
    "GreenfieldUnauthorized",
    "GreenfieldUnavailable",
    "WebhookEvent",
    "WebhookRejected",
    "parse_event",
    "verify",
]
