"""Run an ASGI app under a real uvicorn server on a free 127.0.0.1 port, in a thread.

    with serve(create_app(settings, store=store)) as server:
        httpx.post(f"{server.url}/webhooks/dbt", ...)

The app's lifespan runs as in production: start-up before `serve` yields,
shutdown (draining the recorder) when the block ends.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn


@dataclass(frozen=True)
class RunningServer:
    url: str
    host: str
    port: int
    server: uvicorn.Server


@contextmanager
def serve(app: Any, *, startup_timeout: float = 15.0) -> Iterator[RunningServer]:
    """Serve `app` until the block ends; raise if it does not start."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="relay-test-server", daemon=True
    )
    thread.start()
    try:
        _wait_started(server, thread, startup_timeout)
        yield RunningServer(f"http://{host}:{port}", host, port, server)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def _wait_started(server: uvicorn.Server, thread: threading.Thread, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the relay server stopped during start-up (see its log)")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the relay server did not start within {timeout} s")
        time.sleep(0.01)


def signed_headers(body: bytes, secret: str) -> dict[str, str]:
    """The headers dbt Cloud sends: Authorization is the hex HMAC-SHA256 of the exact body."""
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Authorization": signature, "Content-Type": "application/json"}
