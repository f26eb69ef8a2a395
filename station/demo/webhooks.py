"""BTCPay-style payout webhooks from the demo issuer (a TEST PEER).

Each configured webhook gets one background thread that delivers its events in order, as
BTCPay's ``WebhookSender`` does (one processing queue per webhook). A delivery is a POST of the
camelCase event body with ``BTCPay-Sig: sha256=<lowercase hex HMAC-SHA256(secret, raw body)>``;
a failed delivery (transport error or non-2xx) is redelivered after each delay in
``retry_delays_s`` with a fresh ``deliveryId``, ``isRedelivery: true`` and the first delivery's
id in ``originalDeliveryId``. The secret is never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from station.demo.books import Payout, new_id

__all__ = ["DEFAULT_RETRY_DELAYS_S", "WebhookSender", "WebhookTarget", "sign"]

log = logging.getLogger("station.demo.issuer.webhooks")

DEFAULT_RETRY_DELAYS_S: tuple[float, ...] = (10.0, 60.0, 600.0, 600.0, 600.0)
"""BTCPay's automatic redelivery waits 10 s, 1 min, then 10 min several times."""


def sign(secret: str, body: bytes) -> str:
    """The ``BTCPay-Sig`` header value for ``body``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """Where to deliver and the shared secret; ``id`` is BTCPay's webhook id."""

    url: str
    secret: str = field(repr=False)
    id: str = field(default_factory=new_id)


@dataclass(frozen=True, slots=True)
class _Delivery:
    body: dict[str, Any]
    original_id: str


class _Worker(threading.Thread):
    def __init__(
        self,
        target: WebhookTarget,
        delays: Sequence[float],
        client_factory: Callable[[], httpx.Client],
        delivered: Callable[[WebhookTarget, dict[str, Any], int | None], None],
    ) -> None:
        super().__init__(name=f"demo-issuer-webhook-{target.id}", daemon=True)
        self.target = target
        self.delays = tuple(delays)
        self.queue: queue.Queue[_Delivery | None] = queue.Queue()
        self._client_factory = client_factory
        self._delivered = delivered
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.queue.put(None)

    def run(self) -> None:
        with self._client_factory() as client:
            while True:
                item = self.queue.get()
                if item is None or self._halt.is_set():
                    return
                self._deliver(client, item)

    def _post(self, client: httpx.Client, body: dict[str, Any]) -> int | None:
        raw = json.dumps(body, indent=2).encode("utf-8")
        headers = {"Content-Type": "application/json", "BTCPay-Sig": sign(self.target.secret, raw)}
        try:
            response = client.post(self.target.url, content=raw, headers=headers)
        except httpx.HTTPError as exc:
            log.info("webhook %s %s: %s", body["type"], body["payoutId"], type(exc).__name__)
            return None
        self._delivered(self.target, body, response.status_code)
        return response.status_code

    def _deliver(self, client: httpx.Client, item: _Delivery) -> None:
        body = item.body
        status = self._post(client, body)
        for delay in self.delays:
            if status is not None and 200 <= status < 300:
                return
            if self._halt.wait(delay):
                return
            body = {
                **body,
                "deliveryId": new_id(),
                "isRedelivery": True,
                "originalDeliveryId": item.original_id,
                "timestamp": int(time.time()),
            }
            status = self._post(client, body)


class WebhookSender:
    """Turns ledger events into signed deliveries, one ordered worker per target."""

    def __init__(
        self,
        targets: Sequence[WebhookTarget],
        *,
        retry_delays_s: Sequence[float] = DEFAULT_RETRY_DELAYS_S,
        client_factory: Callable[[], httpx.Client] | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        factory = client_factory or (lambda: httpx.Client(timeout=timeout_s))
        self.deliveries: deque[tuple[str, dict[str, Any], int | None]] = deque(maxlen=1000)
        """(webhook id, body, HTTP status) of every attempt that got an answer, for tests."""
        self._workers = [_Worker(t, retry_delays_s, factory, self._record) for t in targets]
        self._started = False

    def _record(self, target: WebhookTarget, body: dict[str, Any], status: int | None) -> None:
        self.deliveries.append((target.id, body, status))

    def start(self) -> None:
        if not self._started:
            self._started = True
            for worker in self._workers:
                worker.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        for worker in self._workers:
            worker.stop()
        for worker in self._workers:
            if worker.is_alive():
                worker.join(timeout_s)

    def __call__(self, event: str, payout: Payout) -> None:
        """Ledger listener: enqueue (never blocks, runs under the ledger lock)."""
        now = int(time.time())
        for worker in self._workers:
            delivery_id = new_id()
            body = {
                "deliveryId": delivery_id,
                "webhookId": worker.target.id,
                "originalDeliveryId": delivery_id,
                "isRedelivery": False,
                "type": event,
                "timestamp": now,
                "storeId": payout.store_id,
                "payoutId": payout.id,
                "pullPaymentId": payout.pull_payment_id,
                "payoutState": payout.state,
            }
            worker.queue.put(_Delivery(body, delivery_id))
