"""The station's ways into the tracker: one :class:`~station.uplink.base.Uplink` protocol and
its implementations (HTTP API, direct database, none). The forwarder is the only caller that
sends; the status cache is the only one that asks. ``direct`` is the only module of ``station``
that imports ``tracker``."""
