"""Helpers for tests that run the relay as a user does: subprocesses, ports, waiting."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import requests

from dbt_tableau_relay import runs  # noqa: F401 - its tables join Base.metadata
from dbt_tableau_relay.store import Base, Store

RELAY = [sys.executable, "-m", "dbt_tableau_relay"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], object], timeout: float = 30.0, what: str = "it") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`dbt-tableau-relay ARGS` to its end, output captured."""
    return subprocess.run(
        [*RELAY, *args],
        capture_output=True,
        text=True,
        env=os.environ | dict(env or {}),
        timeout=timeout,
        check=False,
    )


class ServeProcess:
    """`dbt-tableau-relay --config CONFIG serve` in a subprocess, its output in a log file."""

    def __init__(
        self,
        config: Path,
        port: int,
        *,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.config = config
        self.url = f"http://127.0.0.1:{port}"
        self.log = config.parent / "serve.log"
        self.env = os.environ | dict(env or {})
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self, timeout: float = 90.0) -> ServeProcess:
        """Start and wait until it answers (generous: a loaded machine starts Python slowly)."""
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(
                [*RELAY, "--config", str(self.config), *self.args, "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(lambda: healthy(self.url), timeout, "the relay to answer /healthz")
        return self

    def kill(self) -> None:
        """kill -9: no clean-up of any kind."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.kills += 1

    def stop(self) -> int | None:
        """SIGTERM, as an orchestrator stops it; uvicorn shuts down, then re-raises the signal."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        assert code in (0, -signal.SIGTERM), f"serve exited {code}"
        return code

    def output(self) -> str:
        return self.log.read_text()


def empty_database(store: Store) -> None:
    """Delete every row of every table, dependants first (a module-shared database per test)."""
    with store.session() as session:
        for table in reversed(Base.metadata.sorted_tables):
            session.execute(table.delete())
