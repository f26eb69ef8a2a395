"""Getting records into the tracker without losing or duplicating one.

    pipeline ──Outbox.append (SQLite WAL, fsync before it returns)──► Forwarder thread
             ──► Uplink.send (HTTP | direct database) ──► Outbox.settle (the tracker's answer)

:mod:`station.outbox.outbox` is the durable spool and the station's replay memory;
:mod:`station.outbox.forwarder` is the one thread that drains it, oldest record first.
"""
