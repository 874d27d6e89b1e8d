"""HTTP plumbing: a keep-alive HTTP/1.1 server, faults, the request log.

Each /api/ call gets its latency and fault first; then `api.dispatch` answers
it; then it is recorded (method, path, query, status, whether a token came,
never the token). /_emulator/ calls go to `control` and bypass all of that.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from dbt_tableau_relay.emulators.dbt_cloud import api
from dbt_tableau_relay.emulators.dbt_cloud.control import control
from dbt_tableau_relay.emulators.dbt_cloud.faults import Fault, Faults
from dbt_tableau_relay.emulators.dbt_cloud.state import CloudState, RecordedRequest

logger = logging.getLogger("dbt_tableau_relay.emulators.dbt_cloud")


class CloudHTTPServer(ThreadingHTTPServer):
    """Serves one `CloudState`; remembers its open connections so `stop` can end them."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: CloudState, faults: Faults) -> None:
        super().__init__(address, _Handler)
        self.state = state
        self.faults = faults
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def track(self, conn: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            (self._connections.add if open_ else self._connections.discard)(conn)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (a timed-out relay) is routine here, not a traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """End keep-alive connections, whose threads would otherwise go on serving."""
        with self._connections_lock:
            for conn in list(self._connections):
                _shut(conn)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nginx"
    sys_version = ""
    timeout = 60  # an idle keep-alive connection ends after this many seconds
    disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms stalls
    server: CloudHTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("dbt_cloud_emulator.http " + format, *args)

    def _handle(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        body = self._read_body()
        if url.path.startswith("/_emulator/"):
            status, payload = control(
                self.server.state, self.server.faults, self.command, url.path, body
            )
            self._send(status, json.dumps(payload).encode(), {"Content-Type": api.JSON_TYPE})
        else:
            headers = {k.lower(): v for k, v in self.headers.items()}
            self._api(api.Request(self.command, unquote(url.path), query, headers))

    def _api(self, req: api.Request) -> None:
        faults, state = self.server.faults, self.server.state
        if faults.latency > 0:
            time.sleep(faults.latency)
        fault = faults.take()
        answer = _fault_answer(fault) if fault is not None else _answer(state, req)
        had_token = "authorization" in req.headers
        state.log(
            RecordedRequest(req.method, req.path, req.query, answer[0], time.time(), had_token)
        )
        if answer[0] == 0:
            self._drop()
        else:
            self._send(*answer)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _drop(self) -> None:
        """Close the socket without a word, as a crashed load balancer would."""
        self.close_connection = True
        _shut(self.connection)


def _answer(state: CloudState, req: api.Request) -> api.Answer:
    try:
        return api.dispatch(state, req)
    except api.ApiError as exc:
        return api.error_answer(exc.status, exc.message)
    except Exception:
        logger.exception("dbt_cloud_emulator.internal_error path=%s", req.path)
        return api.error_answer(500, "An unexpected error occurred.")


def _fault_answer(fault: Fault) -> api.Answer:
    if fault.kind == "drop":
        return 0, b"", {}
    if fault.kind == "rate_limit":
        headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
        return api.error_answer(429, "Request was throttled.", headers)
    return api.error_answer(fault.status, HTTPStatus(fault.status).phrase)


def _shut(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the peer
        conn.shutdown(socket.SHUT_RDWR)
