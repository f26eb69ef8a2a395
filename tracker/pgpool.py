"""A small pool of autocommitted psycopg ``AsyncConnection``s for the async ingest path.

Held by :class:`tracker.db.Database` (one pool per event loop); nothing here is global.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any


class AsyncPgPool:
    """A handful of autocommitted psycopg ``AsyncConnection``s for the async ingest path.

    Why not SQLAlchemy's pool: the hot ingest statement is one autocommitted round trip, and
    awaiting it on the event loop saves the worker-thread hop and GIL hand-offs a synchronous
    connection costs per tap (measured in bench/tracker.py). psycopg_pool is not a
    dependency; this needs no more than a queue. Connections open lazily, at most ``size``.

    An asyncio connection belongs to the loop it was opened on, so a pool serves one loop
    (see :meth:`tracker.db.Database.async_pool`).
    """

    def __init__(self, conninfo: str, size: int, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._conninfo = conninfo
        self._size = size
        self._opened = 0  # slots handed out; an idle ``None`` is a slot with no connection
        self._idle: asyncio.Queue[Any] = asyncio.Queue()
        self._all: set[Any] = set()

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        """An open autocommit connection; a broken one is closed on return, not reused."""
        import psycopg

        try:
            conn = self._idle.get_nowait()
        except asyncio.QueueEmpty:
            if self._opened < self._size:
                self._opened += 1
                conn = None
            else:
                conn = await self._idle.get()
        try:
            if conn is None or conn.closed:
                conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
                self._all.add(conn)
            yield conn
        finally:
            if conn is not None and not _reusable(conn):
                self.discard(conn)
                conn = None
            self._idle.put_nowait(conn)

    def discard(self, conn: Any) -> None:
        self._all.discard(conn)
        _close_now(conn)

    def close_idle(self) -> None:
        """Close the connections nobody is using (after the server went away: they are dead
        too). Connections in use are left to their users, who find out and return them."""
        slots = 0
        while True:
            try:
                conn = self._idle.get_nowait()
            except asyncio.QueueEmpty:
                break
            if conn is not None:
                self.discard(conn)
            slots += 1
        for _ in range(slots):
            self._idle.put_nowait(None)

    def close(self) -> None:
        """Close every connection, in use or not (app shutdown, when no request is left).
        Safe from any thread or loop: closing does not wait."""
        for conn in list(self._all):
            self.discard(conn)


def _reusable(conn: Any) -> bool:
    """Open, healthy and idle: not broken, and no statement left running (a request cancelled
    while it awaited its answer) that would stand in the next user's way."""
    from psycopg.pq import TransactionStatus

    return (
        not conn.closed
        and not conn.broken
        and conn.info.transaction_status == TransactionStatus.IDLE
    )


def _close_now(conn: Any) -> None:
    # AsyncConnection.close() awaits nothing (it only finishes the libpq connection), so
    # finishing it here is the same and works from outside the connection's own loop.
    if not conn.closed:
        conn.pgconn.finish()


