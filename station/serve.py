"""Serving an ASGI app from a background thread on loopback: the station's POS endpoint, and
the demo wallet and demo issuer (test peers) in the demo and in tests.

uvicorn runs in its own thread with its own event loop, so the station's reader threads stay as
they are.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn


def serve_in_thread(
    app: Any, host: str = "127.0.0.1", port: int = 0, *, lifespan: str = "off"
) -> tuple[str, Callable[[], None]]:
    """Run ``app`` with uvicorn in a daemon thread; return (base URL with the real port, stop).

    Binding the socket here (port 0 = any free port) means the URL is known before the first
    request, and parallel tests never collide on a port.
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    real_port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan=lifespan, access_log=False,
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn:{real_port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError(f"the server on {host}:{real_port} did not start")
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{real_port}", stop
