"""What the station tells the world about its own health: the heartbeat it sends the tracker
every period (:mod:`station.monitor.heartbeat`) and the ``/metrics`` endpoint a Prometheus
server scrapes (:mod:`station.monitor.metrics`).

Both read the station through narrow callables handed in by the composition root
(:mod:`station.app`), never the daemon, the charge flow or the POS endpoint themselves: a
monitor that could reach them could also change them.
"""
