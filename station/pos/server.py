"""Serving an ASGI app from a background thread on loopback (the POS endpoint, test peers).

uvicorn runs in its own thread with its own event loop, so the station's reader threads stay
as they are. Port 0 binds a free port; :attr:`ServedApp.url` tells which one was taken.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class ServedApp:
    url: str
    host: str
    port: int
    _server: Any
    _thread: threading.Thread

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)


def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0,
                    *, startup_timeout: float = 10.0) -> ServedApp:
    """Start ``app`` on ``host:port`` in a daemon thread and return once it accepts requests."""
    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name=f"http:{bound}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the HTTP server on {host}:{bound} did not start")
        time.sleep(0.01)
    shown = f"[{host}]" if ":" in host else host
    return ServedApp(f"http://{shown}:{bound}", host, bound, server, thread)
