"""One replica at a time talks to Tableau: the `tableau` lease, and what it gates.

Replicas are played by several `Leadership`s, queues and clients on one
store, on SQLite and on PostgreSQL (the `store` fixture); several `serve`
processes on one PostgreSQL database are in test_replicas.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import harness
import pytest
from harness import wait_until
from prometheus_client import REGISTRY
from sqlalchemy import update

from dbt_tableau_relay import cluster
from dbt_tableau_relay.cluster import LEASE, Leadership, take_over
from dbt_tableau_relay.config import TableauSettings, WorkerSettings
from dbt_tableau_relay.emulators.tableau import Emulator
from dbt_tableau_relay.errors import NotLeaderError
from dbt_tableau_relay.lineage_queue import LineageQueue
from dbt_tableau_relay.queue import RefreshQueue
from dbt_tableau_relay.runs import Lease, LineageJob, read_lease
from dbt_tableau_relay.service import running_worker
from dbt_tableau_relay.store import RefreshJob, Store, utcnow
from dbt_tableau_relay.tableau import TableauClient
from dbt_tableau_relay.worker import Worker

SITE, PAT_NAME, PAT_SECRET = "marketing", harness.PAT_NAME, harness.PAT_SECRET
EXEC = "Sales/Executive Overview"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(site=SITE, pat_name=PAT_NAME, pat_secret=PAT_SECRET, job_duration=0.1) as e:
        yield e


def tableau_settings(emu: Emulator) -> TableauSettings:
    return TableauSettings.model_validate(
        {
            "server_url": emu.url,
            "site": SITE,
            "token_name": PAT_NAME,
            "token_secret": PAT_SECRET,
            "request_timeout": 2.0,
        }
    )


def queued_job(store: Store, ref: str, *, by: str = "path") -> int:
    """A queued refresh job of the workbook `ref`, as the recorder would leave it."""
    now = utcnow()
    job = RefreshJob(
        target_kind="workbook",
        target_by=by,
        target_ref=ref,
        target_key=f"workbook:{by}:{ref}",
        rule_name="test",
        incremental=False,
        wait=False,
        state="queued",
        not_before=now,
        created_at=now,
        updated_at=now,
        last_event_at=now,
    )
    with store.session() as session:
        session.add(job)
        session.flush()
        return job.id


def queued_lineage_job(store: Store, run_id: str) -> int:
    now = utcnow()
    job = LineageJob(
        run_id=run_id,
        rule_name="downstream",
        sources="exposures",
        wait=False,
        incremental=False,
        state="queued",
        not_before=now,
        created_at=now,
        updated_at=now,
        last_event_at=now,
    )
    with store.session() as session:
        session.add(job)
        session.flush()
        return job.id


def job(store: Store, job_id: int) -> RefreshJob:
    found = store.get_job(job_id)
    assert found is not None
    return found


def expire_lease(store: Store) -> None:
    with store.session() as session:
        session.execute(update(Lease).values(until=utcnow() - timedelta(seconds=1)))


# -- the lease ------------------------------------------------------------------------


def test_one_replica_leads_at_a_time(store: Store) -> None:
    a, b = Leadership(store, "a", 30.0), Leadership(store, "b", 30.0)
    a.beat()
    b.beat()
    a.beat()  # a renewal keeps it
    b.beat()
    assert a.leading()
    assert not b.leading()


def test_a_leader_that_stops_renewing_is_replaced_when_its_lease_runs_out(store: Store) -> None:
    dead = Leadership(store, "dead", 1.0)
    dead.beat()  # it led once, then was killed: no renewal, no release
    follower = Leadership(store, "follower", 1.0)
    follower.start()
    try:
        wait_until(follower.leading, timeout=20)
    finally:
        follower.stop()
    assert not dead.leading()


def test_a_leader_stops_counting_itself_leading_before_others_may_take_over(
    store: Store,
) -> None:
    now = [100.0]
    leader = Leadership(store, "a", 10.0, clock=lambda: now[0])
    leader.beat()
    found = read_lease(store, LEASE)
    assert found is not None
    assert found[1] >= utcnow() + timedelta(seconds=9)  # nobody else before about 10 s
    now[0] += 7.9
    assert leader.leading()
    now[0] += 0.2
    assert not leader.leading()  # a fifth of a lease before the others may take it


def test_a_leader_cut_off_from_the_database_leads_until_its_deadline(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [0.0]
    lost: list[str] = []
    leader = Leadership(store, "a", 10.0, clock=lambda: now[0], on_lost=lambda: lost.append("x"))
    leader.beat()

    def unreachable(*_: object, **__: object) -> bool:
        raise OSError("connection refused")

    monkeypatch.setattr(cluster, "take_lease", unreachable)
    now[0] = 4.0
    leader.beat()
    assert leader.leading()
    assert lost == []
    now[0] = 8.5
    leader.beat()
    assert not leader.leading()
    assert lost == ["x"]


def test_a_stopped_leader_releases_the_lease_and_the_next_leads_at_once(store: Store) -> None:
    a = Leadership(store, "a", 60.0)
    a.beat()
    a.stop()
    b = Leadership(store, "b", 60.0)
    b.beat()
    assert b.leading()
    assert not a.leading()


def test_each_change_of_lead_is_heard_once(store: Store) -> None:
    heard: list[str] = []
    a = Leadership(
        store,
        "a",
        60.0,
        on_gained=lambda: heard.append("gained"),
        on_lost=lambda: heard.append("lost"),
    )
    a.beat()
    a.beat()
    expire_lease(store)
    Leadership(store, "b", 60.0).beat()
    a.beat()
    a.beat()
    assert heard == ["gained", "lost"]
    assert REGISTRY.get_sample_value("relay_tableau_leader") == 0


def test_the_leader_says_so_in_its_metrics(store: Store) -> None:
    leader = Leadership(store, "a", 60.0)
    leader.beat()
    assert REGISTRY.get_sample_value("relay_tableau_leader") == 1
    leader.stop()
    assert REGISTRY.get_sample_value("relay_tableau_leader") == 0


# -- the jobs of a leader that is gone ----------------------------------------------------


def test_the_new_leader_takes_over_the_old_leaders_jobs_at_once(store: Store) -> None:
    new, old = RefreshQueue(store, "new", 600.0), RefreshQueue(store, "old", 600.0)
    queued_job(store, "A/Own")
    [own] = new.claim(1)
    others = [queued_job(store, "A/One"), queued_job(store, "A/Two")]
    assert sorted(j.id for j in old.claim(5)) == others
    queued_lineage_job(store, "77")
    assert len(LineageQueue(store, "old", 600.0).claim(1)) == 1
    assert new.claim(5) == []  # their job leases have ten minutes to run

    assert take_over(store, "new") == 3

    taken = new.claim(5)
    assert sorted(j.id for j in taken) == others
    assert all(j.resumed for j in taken)  # their refreshes may have reached Tableau
    assert len(LineageQueue(store, "new", 600.0).claim(5)) == 1
    assert job(store, own.id).claimed_by == "new"


def test_a_worker_that_does_not_lead_claims_nothing(store: Store, emu: Emulator) -> None:
    leading = [False]
    client = TableauClient(tableau_settings(emu))
    worker = Worker(store, client, WorkerSettings(), worker_id="w", leading=lambda: leading[0])
    job_id = queued_job(store, EXEC)
    assert worker._claim_free_slots() == 0
    assert job(store, job_id).state == "queued"
    leading[0] = True
    assert worker._claim_free_slots() == 1
    wait_until(lambda: job(store, job_id).state == "succeeded")
    worker.stop()


def test_a_send_that_may_not_sign_in_is_handed_back_to_the_queue(
    store: Store, emu: Emulator
) -> None:
    client = TableauClient(tableau_settings(emu), may_call=lambda: False)
    worker = Worker(store, client, WorkerSettings(), worker_id="w")
    job_id = queued_job(store, EXEC)
    [claimed] = worker.queue.claim(1)
    worker.process(claimed)
    handed = job(store, job_id)
    assert handed.state == "queued"
    assert [a.outcome for a in handed.attempt_log] == ["handed_over"]
    assert worker.queue.transient_failures(claimed) == 0  # no step towards dead-lettering
    assert emu.requests == []


def test_a_resumed_send_that_may_not_sign_in_stays_resumed(store: Store, emu: Emulator) -> None:
    client = TableauClient(tableau_settings(emu), may_call=lambda: False)
    worker = Worker(store, client, WorkerSettings(lease_seconds=0.01), worker_id="w")
    job_id = queued_job(store, EXEC)
    worker.queue.claim(1)
    wait_until(lambda: job(store, job_id).lease_until < utcnow())  # type: ignore[operator]
    [resumed] = worker.queue.claim(1)
    assert resumed.resumed
    worker.process(resumed)
    held = job(store, job_id)
    assert held.state == "sending"  # claimed again as resumed: its refresh is looked for first
    assert held.attempt_log[-1].outcome == "handed_over"


# -- the client: never a sign-in without the lead --------------------------------------------


def test_a_client_that_may_not_sign_in_sends_nothing(emu: Emulator) -> None:
    client = TableauClient(tableau_settings(emu), may_call=lambda: False)
    with pytest.raises(NotLeaderError):
        client.projects()
    client.close()
    assert emu.requests == []


def test_a_client_that_lost_the_lead_does_not_sign_in_again(emu: Emulator) -> None:
    leading = [True]
    client = TableauClient(tableau_settings(emu), may_call=lambda: leading[0])
    client.projects()
    leading[0] = False
    client.forget_session()
    with pytest.raises(NotLeaderError):
        client.projects()
    assert len(emu.sign_ins()) == 1


def test_a_call_that_starts_as_leader_then_meets_401002_does_not_sign_in_again(
    emu: Emulator,
) -> None:
    answers = iter([True, True, True])  # the first call (and its sign-in), the second call
    client = TableauClient(tableau_settings(emu), may_call=lambda: next(answers, False))
    client.projects()
    emu.invalidate_sessions()  # meanwhile the lead was lost, and the new leader signed in
    with pytest.raises(NotLeaderError):
        client.projects()  # started while leading; its 401002 would renew the session
    assert len(emu.sign_ins()) == 1
    assert [r.status for r in emu.requests][-1] == 401


def test_a_replica_that_lost_the_lead_starts_no_call(emu: Emulator) -> None:
    leading = [True]
    client = TableauClient(tableau_settings(emu), may_call=lambda: leading[0])
    client.projects()
    sent = len(emu.requests)
    leading[0] = False  # its session is still good: it sends nothing all the same
    with pytest.raises(NotLeaderError):
        client.projects()
    assert len(emu.requests) == sent


def test_a_client_that_lost_the_lead_does_not_sign_out(emu: Emulator) -> None:
    leading = [True]
    client = TableauClient(tableau_settings(emu), may_call=lambda: leading[0])
    client.projects()
    leading[0] = False
    client.close()  # its session is the new leader's to end (by signing in)
    assert not [r for r in emu.requests if r.path.endswith("/auth/signout")]


def test_a_stopping_leader_signs_out_before_it_releases_the_lease(
    tmp_path: Path, emu: Emulator
) -> None:
    settings = harness.relay_settings(emu.url, f"sqlite:///{tmp_path / 'relay.db'}")
    store = Store(settings.database_url)
    store.migrate()
    try:
        with running_worker(settings, store):
            job_id = queued_job(store, EXEC)
            wait_until(lambda: job(store, job_id).state == "succeeded")
        found = read_lease(store, LEASE)
    finally:
        store.dispose()
    [sign_out] = [r for r in emu.requests if r.path.endswith("/auth/signout")]
    assert found is not None
    assert found[1].timestamp() >= sign_out.at  # released after Tableau heard the sign-out
    assert found[1] <= utcnow()


def test_the_first_sign_in_waits_for_the_lead(store: Store, emu: Emulator) -> None:
    """A replica that starts as a follower has sent Tableau nothing when it becomes leader."""
    holder = Leadership(store, "other", 60.0)
    holder.beat()
    lead = Leadership(store, "me", 60.0)
    client = TableauClient(tableau_settings(emu), may_call=lead.leading)
    lead.beat()
    with pytest.raises(NotLeaderError):
        client.projects()
    holder.stop()
    lead.beat()
    client.projects()
    assert len(emu.sign_ins()) == 1
