"""HTTP plumbing: a keep-alive HTTP/1.1 server, faults, the request log.

Each /api/ call gets its latency and fault first; then `api.dispatch` (or, for
/api/metadata/graphql, `metadata.answer`) answers it; then it is recorded
(method, path, query, status, whether a token came, never the token).
/_emulator/ calls go to `control` and bypass all of that, once `guard` let
them in. Every body is capped (`guard.MAX_BODY_BYTES`, 413).
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
from urllib.parse import parse_qs, urlsplit

from dbt_tableau_relay.emulators.tableau import api, metadata
from dbt_tableau_relay.emulators.tableau.control import control
from dbt_tableau_relay.emulators.tableau.faults import Fault, Faults
from dbt_tableau_relay.emulators.tableau.guard import (
    MAX_BODY_BYTES,
    BodyTooLarge,
    control_refusal,
    declared_length,
)
from dbt_tableau_relay.emulators.tableau.protocol import ApiError, Request
from dbt_tableau_relay.emulators.tableau.render import HTML_TYPE, error_body, html_429, render
from dbt_tableau_relay.emulators.tableau.state import SiteState, record

logger = logging.getLogger("dbt_tableau_relay.emulators.tableau")

# status, body, headers (Content-Type included)
Answer = tuple[int, bytes, dict[str, str]]
_LINE = 8192  # bytes at most of a chunk-size or trailer line


class EmulatorHTTPServer(ThreadingHTTPServer):
    """Serves one `SiteState`; remembers its open connections so `stop` can end them."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        state: SiteState,
        faults: Faults,
        control_token: str | None = None,
    ) -> None:
        super().__init__(address, _Handler)
        self.state = state
        self.faults = faults
        self.control_token = control_token  # None: control calls by loopback Host instead
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def track(self, conn: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            (self._connections.add if open_ else self._connections.discard)(conn)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (a killed relay) is routine here, not a traceback."""
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
    server_version = "Tableau"
    sys_version = ""
    timeout = 60  # an idle keep-alive connection ends after this many seconds
    disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms stalls
    server: EmulatorHTTPServer

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
        logger.debug("emulator.http " + format, *args)

    def _handle(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        try:
            body = self._read_body()
        except (BodyTooLarge, ValueError) as exc:
            self._refuse_body(url.path, exc)
            return
        if url.path.startswith("/_emulator/"):
            self._control(url.path, body)
        elif url.path.lower().startswith("/api/"):
            headers = {k.lower(): v for k, v in self.headers.items()}
            self._api(Request(self.command, url.path, query, headers, body))
        else:
            self._send(
                404,
                b"<html><body><h1>404 Not Found</h1></body></html>",
                {"Content-Type": HTML_TYPE},
            )

    def _control(self, path: str, body: bytes) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        port = self.server.server_address[1]
        refusal = control_refusal(headers, port, self.server.control_token)
        if refusal is not None:
            status, payload = 403, {"error": refusal}
        else:
            status, payload = control(
                self.server.state, self.server.faults, self.command, path, body
            )
        self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def _refuse_body(self, path: str, problem: Exception) -> None:
        """413 for a body over the cap, 400 for one whose framing is junk; then hang up."""
        self.close_connection = True  # the rest of the body was never read
        if isinstance(problem, BodyTooLarge):
            status, summary, detail = 413, "Payload Too Large", f"over {MAX_BODY_BYTES} bytes"
        else:
            status, summary, detail = 400, "Bad Request", str(problem)
        if path.lower().startswith("/api/"):
            wants_json = "application/json" in self.headers.get("Accept", "").lower()
            body, ctype = error_body(f"{status}000", summary, detail, wants_json)
        else:
            body, ctype = json.dumps({"error": f"{summary}: {detail}"}).encode(), "application/json"
        self._send(status, body, {"Content-Type": ctype, "Connection": "close"})

    def _api(self, req: Request) -> None:
        faults, state = self.server.faults, self.server.state
        if faults.latency > 0:
            time.sleep(faults.latency)
        fault = faults.take()
        if fault is not None and not fault.processed:
            answer = _fault_answer(fault, req)
        else:
            answer = _answer(state, faults, req)
            if fault is not None:
                answer = _fault_answer(fault, req)
        state.log(record(req.method, req.path, req.query, answer[0], req.token is not None))
        if answer[0] == 0:
            self._drop()
        else:
            self._send(*answer)

    def _read_body(self) -> bytes:
        """The body, at most MAX_BODY_BYTES (BodyTooLarge); ValueError for junk framing."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunks()
        length = declared_length(self.headers.get("Content-Length"))
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunks(self) -> bytes:
        parts, total = [], 0
        while size := int(self.rfile.readline(_LINE).split(b";")[0].strip() or b"0", 16):
            if size < 0:
                raise ValueError("a chunk size is negative")
            total += size
            if total > MAX_BODY_BYTES:
                raise BodyTooLarge
            parts.append(self.rfile.read(size))
            self.rfile.readline(_LINE)
        while self.rfile.readline(_LINE) not in (b"\r\n", b"\n", b""):
            pass  # trailers
        return b"".join(parts)

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if status != 204:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 204:
            self.wfile.write(body)

    def _drop(self) -> None:
        """Close the socket without a word, as a crashed proxy would."""
        self.close_connection = True
        _shut(self.connection)


def _answer(state: SiteState, faults: Faults, req: Request) -> Answer:
    try:
        if metadata.is_metadata(req.path):
            return metadata.answer(state, faults, req)
        reply = api.dispatch(state, req)
    except ApiError as exc:
        body, ctype = error_body(exc.code, exc.summary, exc.detail, req.wants_json)
        return exc.status, body, {"Content-Type": ctype}
    except Exception:
        logger.exception("emulator.internal_error path=%s", req.path)
        body, ctype = error_body(
            "500000", "Internal Server Error", "An unexpected error occurred.", req.wants_json
        )
        return 500, body, {"Content-Type": ctype}
    if reply.status == 204 or (not reply.elements and reply.status == 200):
        return reply.status, b"", dict(reply.headers)
    body, ctype = render(reply.elements, req.wants_json)
    return reply.status, body, {"Content-Type": ctype, **reply.headers}


def _fault_answer(fault: Fault, req: Request) -> Answer:
    if fault.kind == "drop":
        return 0, b"", {}
    if fault.kind == "rate_limit":
        headers = {"Content-Type": HTML_TYPE, "Retry-After": f"{fault.retry_after:g}"}
        return 429, html_429(fault.retry_after), headers
    phrase = HTTPStatus(fault.status).phrase
    detail = "The server is temporarily unable to handle the request. Try again later."
    body, ctype = error_body(f"{fault.status}000", phrase, detail, req.wants_json)
    return fault.status, body, {"Content-Type": ctype}


def _shut(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the peer
        conn.shutdown(socket.SHUT_RDWR)
