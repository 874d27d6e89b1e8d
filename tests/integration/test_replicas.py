"""Several `serve` replicas on one PostgreSQL database, one PAT, one Tableau.

Two and then four replicas run as separate processes against the emulator.
1,000 refresh jobs of 1,000 distinct workbooks are queued at once (as the
recorder would leave them), while signed webhooks go to every replica in
turn. Once a good part of the jobs is done, the replica holding the
`tableau` lease is killed with SIGKILL, mid-flight. Then:

- every workbook was refreshed by exactly one POST, answered 202 (the
  killed leader's unrecorded sends were adopted by its successor, not sent
  again);
- Tableau answered no request 401: no replica's sign-in ended the session
  of another that was still using it; there is at most one sign-in per term
  of leadership (one at the start, one after the kill, one more for any
  change of leader a starved heartbeat caused on a loaded machine);
- every webhook was acknowledged by whichever replica received it;
- the leader's successor took over within about a lease period
  (`leader_lease_seconds`, printed; no timed assertion).

Each job's own lease (`worker.lease_seconds`) is a minute here: the
successor finishes the dead leader's jobs because it takes them over when it
gains the lead, not because their leases ran out.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, insert, select

from dbt_tableau_relay.emulators.tableau import Emulator
from dbt_tableau_relay.queue import FINAL_STATES
from dbt_tableau_relay.runs import read_lease
from dbt_tableau_relay.samples import sample_event, signed_headers
from dbt_tableau_relay.store import RefreshJob, Store, utcnow
from support import ServeProcess, free_port, wait_for

SECRET = "replica-secret"
PAT_NAME, PAT_SECRET = "replica-pat", "replica-pat-secret"
JOBS = 1000
WEBHOOKS = 40
KILL_AFTER = 300  # finished jobs before the leader is killed
LEADER_LEASE = float(os.environ.get("RELAY_TEST_LEADER_LEASE", "6"))  # 15 in production

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def write_config(folder: Path, database_url: str, tableau_url: str, port: int) -> Path:
    folder.mkdir()
    config = folder / "relay.yml"
    config.write_text(
        f"""
database_url: "{database_url}"
listen: 127.0.0.1:{port}
dbt: {{webhook_secrets: [{SECRET}]}}
tableau:
  server_url: {tableau_url}
  site: marketing
  token_name: {PAT_NAME}
  token_secret: {PAT_SECRET}
  request_timeout: 10
rules:
  - name: sales
    on: {{job_id: 101}}
    refresh: [{{workbook: Sales/Executive Overview}}]
    wait: false
worker:
  concurrency: 8
  lease_seconds: 60
  leader_lease_seconds: {LEADER_LEASE}
  poll_interval: 0.2
  retry_base_seconds: 0.1
  busy_retry_seconds: 0.3
  max_attempts: 50
"""
    )
    return config


@pytest.fixture
def tableau() -> Iterator[tuple[Emulator, list[str]]]:
    """The emulator with 1,000 more workbooks; their LUIDs."""
    with Emulator(
        site="marketing", pat_name=PAT_NAME, pat_secret=PAT_SECRET, job_duration=0.05
    ) as emu:
        emu.add_project("Bulk")
        yield emu, [emu.add_workbook(f"Bulk/Book {n:04d}") for n in range(JOBS)]


def queue_jobs(store: Store, luids: list[str]) -> float:
    """One queued refresh job per workbook, in one transaction; when they were queued."""
    now = utcnow()
    rows = [
        {
            "target_kind": "workbook",
            "target_by": "luid",
            "target_ref": luid,
            "target_key": f"workbook:luid:{luid}",
            "rule_name": "bulk",
            "incremental": False,
            "wait": False,
            "state": "queued",
            "attempts": 0,
            "not_before": now,
            "created_at": now,
            "updated_at": now,
            "last_event_at": now,
        }
        for luid in luids
    ]
    with store.session() as session:
        session.execute(insert(RefreshJob), rows)
    return time.time()


def finished(store: Store) -> int:
    query = select(func.count()).where(
        RefreshJob.rule_name == "bulk", RefreshJob.state.in_(FINAL_STATES)
    )
    with store.session(readonly=True) as session:
        return session.scalar(query) or 0


def deliver(replicas: list[ServeProcess], acknowledged: list[int]) -> None:
    """Signed events to every replica in turn; a replica that is gone gets it again elsewhere."""
    for n in range(WEBHOOKS):
        body = sample_event("completed", job_id=101, run_id=n, event_id=f"wev_replica_{n:04d}")
        for replica in replicas[n % len(replicas) :] + replicas:
            try:
                answer = requests.post(
                    f"{replica.url}/webhooks/dbt",
                    data=body,
                    headers=signed_headers(body, SECRET),
                    timeout=5,
                )
            except requests.RequestException:
                continue
            if answer.status_code < 300:
                acknowledged.append(n)
                break
        time.sleep(0.05)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("count", [2, 4])
def test_replicas_drain_the_queue_with_one_session_and_survive_the_leaders_kill(
    tmp_path: Path, postgres_url: str, tableau: tuple[Emulator, list[str]], count: int
) -> None:
    emu, luids = tableau
    store = Store(postgres_url)
    store.migrate()
    replicas = [
        ServeProcess(write_config(tmp_path / f"r{i}", postgres_url, emu.url, port), port)
        for i, port in enumerate(free_port() for _ in range(count))
    ]
    acknowledged: list[int] = []
    try:
        for replica in replicas:
            replica.start()
        queued_at = queue_jobs(store, luids)
        webhooks = threading.Thread(target=deliver, args=(replicas, acknowledged))
        webhooks.start()
        wait_for(lambda: finished(store) >= KILL_AFTER, 300, f"{KILL_AFTER} jobs done")
        leader = leading_replica(store, replicas)
        leader.kill()
        killed_at = time.time()
        orphans = in_flight(store)
        wait_for(lambda: finished(store) == JOBS, 600, "every job done")
        drained_at = last_finish(store)
        webhooks.join(120)
    finally:
        for replica in replicas:
            replica.stop()
        logs = [r.output() for r in replicas]
        states = job_states(store)
        store.dispose()

    posts = [r for r in emu.refresh_posts() if r.item_id in set(luids)]
    per_item = {luid: [r.status for r in posts if r.item_id == luid] for luid in luids}
    unauthorised = [r for r in emu.requests if r.status == 401]
    sign_ins = sorted(r.at for r in emu.sign_ins())
    terms = sum(log.count(" cluster.leading ") for log in logs)
    took_over = [t for t in sign_ins if t > killed_at]
    signed_in = took_over[0] if took_over else float("nan")
    first_post = min((r.at for r in posts if r.at > signed_in), default=float("nan"))
    print(
        f"\n{count} replicas: events {WEBHOOKS} (acknowledged {len(acknowledged)}), jobs {JOBS}, "
        f"refresh POSTs {len(posts)}, sign-ins {len(sign_ins)} (terms of leadership {terms}), "
        f"answers 401 {len(unauthorised)}, drained in {drained_at - queued_at:.1f} s, "
        f"jobs in flight at the kill {orphans}, failover after SIGKILL: new sign-in "
        f"{signed_in - killed_at:.1f} s, first refresh {first_post - killed_at:.1f} s "
        f"(leader lease {LEADER_LEASE:.0f} s)"
    )
    assert states == {"succeeded": JOBS}
    assert {luid: s for luid, s in per_item.items() if s != [202]} == {}
    assert unauthorised == []
    assert 2 <= len(sign_ins) <= terms  # one sign-in per term of leadership, at most
    assert took_over, "no replica signed in after the leader was killed"
    if orphans:  # the killed leader's jobs in flight: taken over, not left to their leases
        assert " cluster.took_over " in "".join(logs)
    assert sorted(acknowledged) == list(range(WEBHOOKS))


def leading_replica(store: Store, replicas: list[ServeProcess]) -> ServeProcess:
    found = read_lease(store, "tableau")
    assert found is not None
    pid = int(found[0].rsplit(":", 1)[1])
    [leader] = [r for r in replicas if r.proc is not None and r.proc.pid == pid]
    return leader


def in_flight(store: Store) -> int:
    query = select(func.count()).where(RefreshJob.state.in_(("sending", "following")))
    with store.session(readonly=True) as session:
        return session.scalar(query) or 0


def last_finish(store: Store) -> float:
    query = select(func.max(RefreshJob.finished_at)).where(RefreshJob.rule_name == "bulk")
    with store.session(readonly=True) as session:
        last = session.scalar(query)
    assert last is not None
    return last.timestamp()


def job_states(store: Store) -> dict[str, int]:
    query = (
        select(RefreshJob.state, func.count())
        .where(RefreshJob.rule_name == "bulk")
        .group_by(RefreshJob.state)
    )
    with store.session(readonly=True) as session:
        return {str(state): int(n) for state, n in session.execute(query).all()}
