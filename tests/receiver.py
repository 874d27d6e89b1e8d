"""A real HTTP receiver for notification tests: records every POST, answers as scripted.

Stands in for a Slack or Teams webhook, or any JSON endpoint: a stdlib
`ThreadingHTTPServer` on 127.0.0.1, whose URL path looks like a secret (as
Slack's and Teams' do) so that tests can check it never leaks.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """Answers the statuses in `answers` in turn, then 200 for ever."""

    def __init__(self, answers: Sequence[int] = (), path: str = "/hooks/T0RELAY/s3cr3t-hook-token"):
        self.answers = list(answers)
        self.path = path
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}{self.path}"

    def bodies(self) -> list[Any]:
        with self._lock:
            return [r.json() for r in self.received]

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while self.count() < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {count} requests, got {self.count()}")
            time.sleep(0.02)
        with self._lock:
            return list(self.received)

    def _answer(self, received: Received) -> int:
        with self._lock:
            self.received.append(received)
            return self.answers.pop(0) if self.answers else 200

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status = receiver._answer(Received(self.path, dict(self.headers), body))
                reply = b"ok" if status < 400 else b"internal_error"
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: the tests read `received`

        return Handler

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


@contextmanager
def receivers(*answers: Sequence[int]) -> Iterator[list[Receiver]]:
    """One receiver per answer script, all running."""
    started: list[Receiver] = []
    try:
        for script in answers:
            started.append(Receiver(script).__enter__())
        yield started
    finally:
        for r in started:
            r.__exit__()
