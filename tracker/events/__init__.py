"""Live events: committed writes reach every open operator page within a second.

* ``notify``  - writers announce a change inside their transaction (``pg_notify`` on
  PostgreSQL; in-process after commit on SQLite for what polling cannot see);
* ``hub``     - :class:`EventHub`, the in-process fan-out to SSE subscribers;
* ``watcher`` - :class:`Watcher`, LISTEN (PostgreSQL) or polling (SQLite), loading each row
  once in its one public shape (``TapPublic`` / ``PayoutPublic``);
* ``live``    - :class:`LiveUpdates`, the hub and watcher of one app, started with it.

(The function :func:`notify` is re-exported here; its module is ``tracker.events.notify``.)
"""

from typing import Any

from tracker.events.hub import EventHub
from tracker.events.notify import CHANNEL, POLLED_TOPICS, TOPICS, Event, decode, encode, notify

# The watcher loads rows through the services, and the services notify through this package:
# ``live`` and ``watcher`` are loaded on first use so that a service importing
# ``tracker.events.notify`` does not pull the services back in half-initialised.
_LAZY = {
    "LiveUpdates": "live", "install": "live", "live_updates": "live",
    "MAX_BACKLOG": "watcher", "Watcher": "watcher", "enrich": "watcher",
    "load_card": "watcher", "load_payouts": "watcher", "load_taps": "watcher",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tracker.events' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"tracker.events.{module}"), name)


__all__ = [
    "CHANNEL",
    "MAX_BACKLOG",
    "POLLED_TOPICS",
    "TOPICS",
    "Event",
    "EventHub",
    "LiveUpdates",
    "Watcher",
    "decode",
    "encode",
    "enrich",
    "install",
    "live_updates",
    "load_card",
    "load_payouts",
    "load_taps",
    "notify",
]
