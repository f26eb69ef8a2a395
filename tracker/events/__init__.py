"""Live events: committed writes reach every open operator page within a second.

* ``notify``  - writers announce a change inside their transaction (``pg_notify`` on
  PostgreSQL; in-process after commit on SQLite for what polling cannot see);
* ``hub``     - :class:`EventHub`, the in-process fan-out to SSE subscribers;
* ``watcher`` - :class:`Watcher`, LISTEN (PostgreSQL) or polling (SQLite), loading each row
  once in its one public shape (``TapPublic`` / ``PayoutPublic``);
* ``live``    - :class:`LiveUpdates`, the hub and watcher of one app, started with it.

(The function :func:`notify` is re-exported here; its module is ``tracker.events.notify``.)
"""

from tracker.events.hub import EventHub
from tracker.events.live import LiveUpdates, install, live_updates
from tracker.events.notify import CHANNEL, POLLED_TOPICS, TOPICS, Event, decode, encode, notify
from tracker.events.watcher import MAX_BACKLOG, Watcher, enrich, load_card, load_payouts, load_taps

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
