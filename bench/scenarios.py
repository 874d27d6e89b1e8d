"""The Tableau-side scenarios of `run_all.py`: calls per refresh, and duplicates after kills.

Each runs `dbt-tableau-relay serve` in a subprocess (SQLite, the production
code path) against its own built-in Tableau emulator in this process, and
counts what the emulator answered: refresh POSTs (and how many were 409093),
job polls (`GET .../jobs/{id}`), job lists (`GET .../jobs`), sign-ins.
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import requests

from dbt_tableau_relay.emulators.tableau import Emulator
from dbt_tableau_relay.samples import sample_event, signed_headers
from dbt_tableau_relay.store import Store

SECRET = "bench-secret"
SITE, PAT_NAME, PAT_SECRET = "bench", "bench", "bench-pat"
FINAL = ("succeeded", "failed", "dead", "merged")
_JOB_POLL = re.compile(r"/jobs/[^/]+$")
_JOB_LIST = re.compile(r"/jobs$")
RULES = """rules:
  - {name: sales, on: {job_id: 101}, refresh: [{workbook: Sales/Executive Overview}]}
  - name: finance
    on: {job_id: 202}
    refresh: [{datasource: Finance/Revenue}, {workbook: Finance/Executive Overview}]
  - {name: marketing, on: {job_id: 303}, refresh: [{workbook: Marketing/Campaign Performance}]}
"""
# tests/integration/test_crash.py's worker: short leases, so a killed claim is taken up soon.
CRASH_WORKER = """worker:
  concurrency: 4
  lease_seconds: 2
  poll_interval: 0.1
  retry_base_seconds: 0.1
  busy_retry_seconds: 0.3
  max_attempts: 50
"""


@dataclass(frozen=True)
class Calls:
    """What the relay spent at Tableau in one scenario."""

    posts: int
    conflicts: int  # refresh POSTs answered 409 (409093: the item is already refreshing)
    polls: int
    lists: int
    sign_ins: int
    lag: float | None = None  # from the last refresh's end to the poll that saw it, seconds


class Serve:
    """`dbt-tableau-relay serve` in a subprocess, its output in serve.log beside its config."""

    def __init__(self, folder: Path, tableau_url: str, port: int, worker: str = "") -> None:
        self.folder, self.port = folder, port
        self.url = f"http://127.0.0.1:{port}"
        self.database_url = f"sqlite:///{folder / 'relay.db'}"
        self.config = folder / "relay.yml"
        self.config.write_text(
            f"database_url: {self.database_url}\nlisten: 127.0.0.1:{port}\n"
            f"dbt: {{webhook_secrets: [{SECRET}]}}\n"
            f"tableau: {{server_url: '{tableau_url}', site: {SITE}, token_name: {PAT_NAME},"
            f" token_secret: {PAT_SECRET}, request_timeout: 5}}\n{RULES}{worker}"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Serve:
        command = [sys.executable, "-m", "dbt_tableau_relay", "--config", str(self.config)]
        with (self.folder / "serve.log").open("a") as log:
            self.proc = subprocess.Popen([*command, "serve"], stdout=log, stderr=log)
        wait_for(self.healthy, 90, "the relay to answer /healthz")
        return self

    def healthy(self) -> bool:
        try:
            return requests.get(f"{self.url}/healthz", timeout=1).ok
        except requests.RequestException:
            return False

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)

    def post(self, job_id: int, n: int) -> int:
        body = sample_event("completed", job_id=job_id, run_id=n, event_id=f"wev_calls_{n:06d}")
        headers = signed_headers(body, SECRET)
        return requests.post(
            f"{self.url}/webhooks/dbt", data=body, headers=headers, timeout=10
        ).status_code

    def settled(self, timeout: float) -> None:
        store = Store(self.database_url)
        try:

            def done() -> bool:
                jobs = store.list_jobs(limit=10_000)
                return bool(jobs) and all(j.state in FINAL for j in jobs)

            wait_for(done, timeout, "every refresh job to end")
        finally:
            store.dispose()

    def recorded_tableau_jobs(self) -> set[str]:
        store = Store(self.database_url)
        try:
            return {j.tableau_job_id for j in store.list_jobs(limit=10_000) if j.tableau_job_id}
        finally:
            store.dispose()


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def emulator(job_duration: float) -> Emulator:
    return Emulator(site=SITE, pat_name=PAT_NAME, pat_secret=PAT_SECRET, job_duration=job_duration)


def calls(tableau: Emulator) -> Calls:
    gets = [r for r in tableau.requests if r.method == "GET"]
    posts = tableau.refresh_posts()
    polls = [r for r in gets if _JOB_POLL.search(r.path)]
    finished = [j.completed_at for j in tableau.jobs if j.completed_at is not None]
    lag = max(r.at for r in polls) - max(finished) if polls and finished else None
    return Calls(
        posts=len(posts),
        conflicts=len([r for r in posts if r.status == 409]),
        polls=len(polls),
        lists=len([r for r in gets if _JOB_LIST.search(r.path)]),
        sign_ins=len(tableau.sign_ins()),
        lag=lag,
    )


def burst(folder: Path, port: int, events: int, job_duration: float) -> Calls:
    """One event; `events` at once while its refresh runs; a late one once the second is sent."""
    with emulator(job_duration) as tableau:
        relay = Serve(folder, tableau.url, port).start()
        try:
            expect_202({relay.post(101, 0)})
            wait_for(lambda: accepted(tableau) >= 1, 60, "the first refresh")
            with ThreadPoolExecutor(20) as pool:
                expect_202(set(pool.map(lambda n: relay.post(101, n), range(1, events + 1))))
            wait_for(lambda: accepted(tableau) >= 2, 120, "the burst's refresh")
            expect_202({relay.post(101, events + 1)})
            wait_for(lambda: accepted(tableau) >= 3, 120, "the late event's refresh")
            relay.settled(job_duration * 3 + 60)
        finally:
            relay.stop()
        return calls(tableau)


def one_refresh(folder: Path, port: int, job_duration: float) -> Calls:
    """One event, one refresh that runs `job_duration` seconds, followed to its end."""
    with emulator(job_duration) as tableau:
        relay = Serve(folder, tableau.url, port).start()
        try:
            expect_202({relay.post(101, 0)})
            relay.settled(job_duration * 2 + 60)
        finally:
            relay.stop()
        return calls(tableau)


def crash(folder: Path, port: int, events: int, kills: int, seed: int) -> tuple[int, int, int]:
    """tests/integration/test_crash.py's scenario: (acknowledged, accepted POSTs, duplicates).

    A sender retries each event until it is acknowledged, as dbt Cloud does;
    the relay is killed with SIGKILL `kills` times at random points of the
    stream and started again. A duplicate is a refresh POST Tableau accepted
    that no refresh job recorded.
    """
    rng = random.Random(seed)
    acknowledged: list[int] = []
    with emulator(0.4) as tableau:
        relay = Serve(folder, tableau.url, port, CRASH_WORKER).start()

        def stream() -> None:
            own = random.Random(rng.random())
            for n in range(events):
                deliver(relay, own.choice((101, 202, 303)), n)
                acknowledged.append(n)
                time.sleep(own.uniform(0.0, 0.06))

        sending = threading.Thread(target=stream)
        sending.start()
        try:
            for point in sorted(rng.sample(range(events // 10, events - events // 10), kills)):
                wait_for(partial(reached, acknowledged, point), 300, f"{point} acks")
                time.sleep(rng.uniform(0.0, 0.3))
                relay.kill()
                time.sleep(rng.uniform(0.0, 0.5))
                relay.start()
            sending.join(600)
            relay.settled(300)
            recorded = relay.recorded_tableau_jobs()
        finally:
            relay.stop()
        accepted = {j.id for j in tableau.jobs}
    return len(acknowledged), len(accepted), len(accepted - recorded)


def reached(acknowledged: list[int], count: int) -> bool:
    return len(acknowledged) >= count


def accepted(tableau: Emulator) -> int:
    return len([r for r in tableau.refresh_posts() if r.status == 202])


def expect_202(statuses: set[int]) -> None:
    if statuses != {202}:
        raise SystemExit(f"the relay answered {sorted(statuses)}, not only 202")


def deliver(relay: Serve, job_id: int, n: int) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if relay.post(job_id, n) < 300:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise SystemExit(f"event {n} was never acknowledged")
