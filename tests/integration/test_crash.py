"""kill -9 in the middle of work: nothing acknowledged is lost, nothing is refreshed twice.

A relay runs as a subprocess (`serve`, SQLite) against the emulator. A sender
posts a stream of signed events, retrying a delivery until it gets a 2xx (as
dbt Cloud does); meanwhile the relay is killed with SIGKILL at random moments
and started again. At the end every acknowledged event must have each of its
targets refreshed by a refresh that Tableau accepted after the event arrived
and that ended with Tableau's verdict, and no refresh may have been sent twice:
every refresh POST Tableau accepted is recorded by a job (a send killed
between Tableau's 202 and its commit is adopted when taken up again, not
sent again).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from dbt_tableau_relay.emulators.tableau import Emulator
from dbt_tableau_relay.samples import sample_event, signed_headers
from dbt_tableau_relay.store import Attempt, Event, RefreshJob, RefreshJobEvent, Store
from support import ServeProcess, free_port, wait_for

SECRET = "crash-test-secret"
PAT_NAME, PAT_SECRET = "crash-pat", "crash-pat-secret"
TARGETS = {  # dbt job id -> what its rule refreshes
    101: ["workbook:path:Sales/Executive Overview"],
    202: ["datasource:path:Finance/Revenue", "workbook:path:Finance/Executive Overview"],
    303: ["workbook:path:Marketing/Campaign Performance"],
}
EVENTS = 150
KILLS = 3
CONCURRENCY = 4  # refreshes in flight at once: what one kill can interrupt

pytestmark = pytest.mark.slow


def write_config(folder: Path, tableau_url: str, port: int) -> Path:
    config = folder / "relay.yml"
    config.write_text(
        f"""
database_url: sqlite:///{folder / "relay.db"}
listen: 127.0.0.1:{port}
dbt: {{webhook_secrets: [{SECRET}]}}
tableau:
  server_url: {tableau_url}
  site: marketing
  token_name: {PAT_NAME}
  token_secret: {PAT_SECRET}
  request_timeout: 5
rules:
  - {{name: sales, on: {{job_id: 101}}, refresh: [{{workbook: Sales/Executive Overview}}]}}
  - name: finance
    on: {{job_id: 202}}
    refresh: [{{datasource: Finance/Revenue}}, {{workbook: Finance/Executive Overview}}]
  - name: marketing
    on: {{job_id: 303}}
    refresh: [{{workbook: Marketing/Campaign Performance}}]
worker:
  concurrency: {CONCURRENCY}
  lease_seconds: 2
  leader_lease_seconds: 2   # a restart waits for the killed process's tableau lease
  poll_interval: 0.1
  retry_base_seconds: 0.1
  busy_retry_seconds: 0.3
  max_attempts: 50
"""
    )
    return config


@dataclass
class Sender:
    """Delivers each event until it is acknowledged, as dbt Cloud retries."""

    url: str
    acknowledged: dict[str, int] = field(default_factory=dict)  # eventId -> dbt job id
    attempts: int = 0

    def deliver(self, job_id: int, n: int) -> None:
        event_id = f"wev_crash_{n:05d}"
        body = sample_event("completed", job_id=job_id, run_id=n, event_id=event_id)
        deadline = time.monotonic() + 300  # longer than a slow restart
        while time.monotonic() < deadline:
            self.attempts += 1
            try:
                answer = requests.post(
                    self.url, data=body, headers=signed_headers(body, SECRET), timeout=5
                )
            except requests.RequestException:
                time.sleep(0.1)
                continue
            if answer.status_code < 300:
                self.acknowledged[event_id] = job_id
                return
            time.sleep(0.1)
        raise AssertionError(f"{event_id} was never acknowledged")


@pytest.fixture
def tableau() -> Iterator[Emulator]:
    with Emulator(
        site="marketing", pat_name=PAT_NAME, pat_secret=PAT_SECRET, job_duration=0.4
    ) as emu:
        yield emu


@pytest.mark.timeout(600)  # a loaded machine restarts Python slowly, three times over
def test_kill_9_loses_nothing_and_refreshes_nothing_twice(
    tmp_path: Path, tableau: Emulator
) -> None:
    port = free_port()
    relay = ServeProcess(write_config(tmp_path, tableau.url, port), port)
    sender = Sender(f"{relay.url}/webhooks/dbt")
    relay.start()
    rng = random.Random(20261130)  # the kills'
    jobs = list(TARGETS)

    def stream() -> None:
        events = random.Random(rng.random())  # the stream's own: threads share no generator
        for n in range(EVENTS):
            sender.deliver(events.choice(jobs), n)
            time.sleep(events.uniform(0.0, 0.06))

    sending = threading.Thread(target=stream)
    sending.start()
    try:
        # Each kill waits for the stream to reach its point (a count of acknowledged
        # events), not for a wall-clock moment: on a slow machine a timed kill can
        # come after the last event, and then it tests nothing.
        for point in kill_points(rng):
            wait_for(lambda p=point: len(sender.acknowledged) >= p, 120, f"{point} acks")
            time.sleep(rng.uniform(0.0, 0.3))  # somewhere inside the work that follows
            relay.kill()
            time.sleep(rng.uniform(0.0, 0.5))
            relay.start()
        sending.join(600)
        assert not sending.is_alive(), "the sender did not finish"
        store = Store(f"sqlite:///{tmp_path / 'relay.db'}")
        try:
            settled = wait_until_settled(store, timeout=300)
            report = check_every_acknowledged_event(store, sender.acknowledged)
            recorded = {j.tableau_job_id for j in settled if j.tableau_job_id}
            adopted = count_attempts(store, "adopted")
        finally:
            store.dispose()
    finally:
        relay.stop()

    accepted = [r for r in tableau.refresh_posts() if r.status == 202]
    accepted_ids = {j.id for j in tableau.jobs}
    duplicates = len(accepted_ids - recorded)
    print(
        f"\ncrash test: events sent {EVENTS}, deliveries {sender.attempts}, "
        f"acknowledged {len(sender.acknowledged)}, kills {relay.kills}, "
        f"refreshes verified {report}, refresh POSTs accepted {len(accepted)}, "
        f"answered 409093 {len([r for r in tableau.refresh_posts() if r.status == 409])}, "
        f"adopted after a kill {adopted}, duplicate refresh POSTs {duplicates}"
    )
    assert relay.kills == KILLS
    assert len(sender.acknowledged) == EVENTS
    assert duplicates == 0, f"{duplicates} refreshes sent again: {accepted_ids - recorded}"


def kill_points(rng: random.Random) -> list[int]:
    """When to kill: KILLS distinct counts of acknowledged events, all inside the stream."""
    return sorted(rng.sample(range(10, EVENTS - 10), KILLS))


def count_attempts(store: Store, outcome: str) -> int:
    query = select(func.count()).where(Attempt.outcome == outcome)
    with store.session(readonly=True) as session:
        return session.scalar(query) or 0


def wait_until_settled(store: Store, timeout: float) -> list[RefreshJob]:
    deadline = time.monotonic() + timeout
    final = ("succeeded", "failed", "dead", "merged")
    while True:
        jobs = store.list_jobs(limit=10_000)
        if jobs and all(j.state in final for j in jobs):
            return jobs
        assert time.monotonic() < deadline, (
            f"unsettled: {[(j.id, j.state) for j in jobs if j.state not in final]}"
        )
        time.sleep(0.2)


def check_every_acknowledged_event(store: Store, acknowledged: dict[str, int]) -> int:
    """Each acknowledged event: each target refreshed by a succeeded job sent after it arrived."""
    verified = 0
    with store.session(readonly=True) as session:
        events = {e.event_id: e for e in session.scalars(select(Event))}
        links = session.execute(
            select(RefreshJobEvent.event_pk, RefreshJob).join(
                RefreshJob, RefreshJob.id == RefreshJobEvent.refresh_job_id
            )
        ).all()
    served: dict[int, list[RefreshJob]] = {}
    for event_pk, job in links:
        served.setdefault(event_pk, []).append(job)
    for event_id, job_id in acknowledged.items():
        event = events.get(event_id)
        assert event is not None, f"acknowledged {event_id} is not in the store"
        for target in TARGETS[job_id]:
            ok = [
                j
                for j in served.get(event.id, [])
                if j.target_key == target
                and j.state == "succeeded"
                and j.sent_at is not None
                and j.sent_at >= event.received_at
            ]
            assert ok, f"{event_id}: {target} was not refreshed after it arrived"
            verified += 1
    return verified
