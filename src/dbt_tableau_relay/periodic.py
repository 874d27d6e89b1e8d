"""A task run every so many seconds on a thread of its own (reconciliation, retention)."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class Periodic:
    """Calls `run_once()` every `every` seconds from `start()` until `stop()`.

    A cycle that raises is logged as `{name}.failed` and the next one runs as
    planned: a bug or an outage must not end the task for good.
    """

    name = "periodic"
    every: float

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> object:
        raise NotImplementedError

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"relay-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.run_once()
            except Exception:  # a bug or an outage: try again next cycle
                log.exception(f"{self.name}.failed")
            self._stopping.wait(self.every)
