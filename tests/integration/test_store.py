"""The store and the recorder against real databases: SQLite files and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select, text, update
from sqlalchemy.exc import IntegrityError, StatementError

from dbt_tableau_relay import notifications, runs  # noqa: F401 - their tables join Base.metadata
from dbt_tableau_relay import recorder as recorder_module
from dbt_tableau_relay.config import Rule
from dbt_tableau_relay.errors import ConfigError, RelayError
from dbt_tableau_relay.events import DbtEvent
from dbt_tableau_relay.recorder import Recorder, Submission, write_batch
from dbt_tableau_relay.rules import PlannedRefresh, match
from dbt_tableau_relay.store import Attempt, Base, Event, RefreshJob, RefreshJobEvent, Store

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
RULES = [
    Rule.model_validate(
        {"name": "marts", "refresh": [{"workbook": "Sales/Overview"}, {"datasource_id": "ds-1"}]}
    )
]


def event(event_id: str, **changes: Any) -> DbtEvent:
    """A completed run; each event id a run of its own unless `run_id` says otherwise."""
    base = DbtEvent(
        event_id=event_id,
        event_type="job.run.completed",
        timestamp=T0,
        account_id="1",
        job_id="123",
        run_id=f"run-{event_id}",
        run_status_code=10,
    )
    return replace(base, **changes)


def submission(event_id: str, at: datetime = T0, rules: list[Rule] = RULES) -> Submission:
    ev = event(event_id)
    return Submission(f'{{"eventId": "{event_id}"}}'.encode(), at, ev, match(rules, ev))


def count(store: Store, model: Any, *where: Any) -> int:
    with store.session(readonly=True) as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def write(store: Store, *subs: Submission, now: datetime = T0) -> list[Any]:
    with store.transaction() as conn:
        return write_batch(conn, subs, now)


# --- schema and durability settings -------------------------------------------


def test_migrations_build_exactly_the_models_schema(store: Store) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_migrate_twice_is_harmless(store: Store) -> None:
    store.migrate()
    names = set(inspect(store.engine).get_table_names())
    assert {"events", "refresh_jobs", "refresh_job_events", "attempts"} <= names


def test_queued_target_index_is_partial_and_unique(store: Store) -> None:
    (index,) = [
        ix
        for ix in inspect(store.engine).get_indexes("refresh_jobs")
        if ix["name"] == "uq_refresh_jobs_queued_target"
    ]
    assert index["unique"]
    assert index["column_names"] == ["target_key"]
    where = index.get("dialect_options", {})
    assert any("queued" in str(v) for v in where.values())


def test_sqlite_runs_wal_with_full_sync_and_a_busy_timeout(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'relay.db'}")
    with store.engine.connect() as conn:
        pragma = {
            p: conn.exec_driver_sql(f"PRAGMA {p}").scalar()
            for p in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
        }
    assert pragma == {
        "journal_mode": "wal",
        "synchronous": 2,
        "busy_timeout": 10_000,
        "foreign_keys": 1,
    }
    store.dispose()


def test_timestamps_come_back_aware_utc(store: Store) -> None:
    local = datetime(2024, 5, 1, 14, 0, tzinfo=timezone_plus(2))
    with store.session() as session:
        session.add(Event(outcome="invalid", body="x", received_at=local))
    (stored,) = store.list_events()
    assert stored.received_at == T0
    assert stored.received_at.tzinfo == UTC


def timezone_plus(hours: int) -> timezone:
    return timezone(timedelta(hours=hours))


def test_naive_timestamps_are_refused(store: Store) -> None:
    naive = Event(outcome="invalid", body="x", received_at=datetime(2024, 1, 1))
    with store.session() as session:
        session.add(naive)
        with pytest.raises(StatementError, match="naive datetime"):
            session.flush()
        session.rollback()


def test_two_queued_jobs_for_one_target_are_impossible(store: Store) -> None:
    write(store, submission("e1"))
    with store.session() as session:
        job = session.scalars(select(RefreshJob)).first()
        assert job is not None
        session.add(copy_job(job))
        with pytest.raises(IntegrityError):
            session.flush()
        session.rollback()


def test_a_queued_and_a_sent_job_for_one_target_may_coexist(store: Store) -> None:
    write(store, submission("e1"))
    with store.session() as session:
        session.execute(update(RefreshJob).values(state="following"))
    write(store, submission("e2"))
    assert count(store, RefreshJob, RefreshJob.state == "queued") == 2
    assert count(store, RefreshJob, RefreshJob.state == "following") == 2


def copy_job(job: RefreshJob) -> RefreshJob:
    fields = {c.key: getattr(job, c.key) for c in inspect(RefreshJob).column_attrs}
    return RefreshJob(**{k: v for k, v in fields.items() if k != "id"})


# --- write_batch: the recorder's transaction ----------------------------------


def test_event_with_plans_is_queued_with_one_job_per_target(store: Store) -> None:
    (result,) = write(store, submission("e1"))
    assert (result.status, result.refreshes_queued) == ("queued", 2)
    stored = store.get_event(result.event_pk)
    assert stored is not None
    assert (stored.outcome, stored.refreshes, stored.event_id) == ("queued", 2, "e1")
    assert sorted(j.target_key for j in stored.jobs) == [
        "datasource:luid:ds-1",
        "workbook:path:Sales/Overview",
    ]
    job = stored.jobs[0]
    assert (job.state, job.attempts, job.not_before, job.created_at) == ("queued", 0, T0, T0)
    assert (job.target_kind, job.target_by) in {("workbook", "path"), ("datasource", "luid")}


def test_event_without_plans_is_stored_ignored(store: Store) -> None:
    (result,) = write(store, submission("e1", rules=[]))
    assert result.status == "ignored"
    stored = store.get_event(result.event_pk)
    assert stored is not None
    assert (stored.outcome, stored.refreshes, stored.jobs) == ("ignored", 0, [])
    assert "no rule matches job.run.completed" in (stored.detail or "")


def test_invalid_body_is_stored_with_its_reason(store: Store) -> None:
    (result,) = write(store, Submission(b"\x00\xff{", T0, error="body is not JSON"))
    assert result.status == "invalid"
    stored = store.get_event(result.event_pk)
    assert stored is not None
    assert (stored.outcome, stored.event_id, stored.detail) == ("invalid", None, "body is not JSON")
    assert stored.body == "\ufffd\ufffd{"  # NUL and bad UTF-8 replaced: both backends accept it


def test_duplicates_in_one_batch_and_across_batches(store: Store) -> None:
    first = write(store, submission("e1"), submission("e1"), submission("e2"))
    assert [r.status for r in first] == ["queued", "duplicate", "queued"]
    again = write(store, submission("e2"), submission("e3", rules=[]))
    assert [r.status for r in again] == ["duplicate", "ignored"]
    assert count(store, Event) == 3
    assert count(store, RefreshJobEvent) == 4


def test_events_of_one_batch_share_the_queued_jobs(store: Store) -> None:
    results = write(store, submission("e1"), submission("e2", at=T0 + timedelta(seconds=1)))
    assert results[0].job_ids == results[1].job_ids
    assert count(store, RefreshJob) == 2
    assert count(store, RefreshJobEvent) == 4


def test_a_later_event_joins_the_queued_job_and_raises_last_event_at(store: Store) -> None:
    write(store, submission("e1"))
    later = T0 + timedelta(minutes=5)
    write(store, submission("e2", at=later), now=later)
    for job in store.list_jobs():
        assert (job.last_event_at, job.created_at, job.updated_at) == (later, T0, later)
        assert len(_job(store, job.id).events) == 2


def test_a_late_arriving_older_event_does_not_lower_last_event_at(store: Store) -> None:
    write(store, submission("e2", at=T0 + timedelta(minutes=5)))
    write(store, submission("e1", at=T0))
    assert {j.last_event_at for j in store.list_jobs()} == {T0 + timedelta(minutes=5)}


@pytest.mark.parametrize(
    ("first", "second", "wait", "incremental"),
    [
        ((False, True), (True, True), True, True),
        ((True, True), (False, False), True, False),
        ((False, False), (False, True), False, False),
    ],
)
def test_joining_merges_wait_any_and_incremental_all(
    store: Store,
    first: tuple[bool, bool],
    second: tuple[bool, bool],
    wait: bool,
    incremental: bool,
) -> None:
    def sub(event_id: str, opts: tuple[bool, bool]) -> Submission:
        rule = Rule.model_validate(
            {"name": "r", "refresh": [{"workbook": "W"}], "wait": opts[0], "incremental": opts[1]}
        )
        return submission(event_id, rules=[rule])

    write(store, sub("e1", first))
    write(store, sub("e2", second))
    (job,) = store.list_jobs()
    assert (job.wait, job.incremental) == (wait, incremental)


def _job(store: Store, pk: int) -> RefreshJob:
    job = store.get_job(pk)
    assert job is not None
    return job


# --- the recorder: group commit --------------------------------------------------


def test_concurrent_records_are_all_committed(store: Store) -> None:
    async def main() -> list[Any]:
        recorder = Recorder(store)
        recorder.start()
        try:
            return await asyncio.gather(*(recorder.record(submission(f"e{i}")) for i in range(200)))
        finally:
            recorder.stop()

    results = asyncio.run(main())
    assert {r.status for r in results} == {"queued"}
    assert count(store, Event) == 200
    assert count(store, RefreshJob) == 2
    assert count(store, RefreshJobEvent) == 400


def test_a_failed_batch_fails_every_request_and_stores_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The events are inserted, then the job upsert fails: the whole batch rolls back."""

    def fail(*args: object) -> None:
        raise RuntimeError("fails after the events were written")

    monkeypatch.setattr(recorder_module, "_upsert_jobs", fail)

    async def main() -> list[Any]:
        recorder = Recorder(store)
        recorder.start()
        try:
            calls = (recorder.record(submission(f"e{i}")) for i in range(20))
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            recorder.stop()

    results = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) for r in results)
    assert count(store, Event) == 0


def test_stop_drains_what_was_already_submitted(store: Store) -> None:
    async def main() -> list[Any]:
        recorder = Recorder(store, max_batch=3)
        recorder.start()
        pending = [asyncio.ensure_future(recorder.record(submission(f"e{i}"))) for i in range(30)]
        await asyncio.sleep(0)  # every submission is queued
        await asyncio.to_thread(recorder.stop)
        return await asyncio.gather(*pending)

    results = asyncio.run(main())
    assert len(results) == 30
    assert count(store, Event) == 30


def test_record_after_stop_is_refused(store: Store) -> None:
    recorder = Recorder(store)
    recorder.start()
    recorder.stop()
    with pytest.raises(RelayError, match="not running"):
        asyncio.run(recorder.record(submission("e1")))


def test_replicas_writing_the_same_targets_keep_one_queued_job(store: Store) -> None:
    """Two recorders on one database (two replicas): coalescing holds under contention."""
    other = Store(store.url)

    async def replica(target: Store, offset: int) -> list[Any]:
        recorder = Recorder(target, max_batch=4)
        recorder.start()
        try:
            calls = (recorder.record(submission(f"r{offset}-{i}")) for i in range(40))
            return await asyncio.gather(*calls)
        finally:
            recorder.stop()

    results: list[list[Any]] = []
    threads = [
        threading.Thread(target=lambda s=s, n=n: results.append(asyncio.run(replica(s, n))))
        for n, s in enumerate([store, other])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.dispose()
    assert [len(r) for r in results] == [40, 40]
    assert count(store, Event) == 80
    assert count(store, RefreshJob, RefreshJob.state == "queued") == 2
    assert count(store, RefreshJobEvent) == 160


# --- read helpers for the admin API ----------------------------------------------


def test_list_events_newest_first_with_limit_and_offset(store: Store) -> None:
    write(store, *(submission(f"e{i}") for i in range(5)))
    assert [e.event_id for e in store.list_events(limit=2)] == ["e4", "e3"]
    assert [e.event_id for e in store.list_events(limit=2, offset=2)] == ["e2", "e1"]


def test_get_missing_event_or_job_is_none(store: Store) -> None:
    assert store.get_event(12345) is None
    assert store.get_job(12345) is None


def test_get_job_has_its_attempts_and_events(store: Store) -> None:
    (result,) = write(store, submission("e1"))
    job_id = result.job_ids[0]
    with store.session() as session:
        for n in (2, 1):
            session.add(
                Attempt(refresh_job_id=job_id, number=n, started_at=T0, outcome="transient")
            )
    job = _job(store, job_id)
    assert [a.number for a in job.attempt_log] == [1, 2]
    assert [e.event_id for e in job.events] == ["e1"]


def test_list_jobs_by_state_and_counts(store: Store) -> None:
    write(store, submission("e1"))
    with store.session() as session:
        session.execute(
            update(RefreshJob).where(RefreshJob.target_by == "luid").values(state="dead")
        )
    assert [j.state for j in store.list_jobs(state="dead")] == ["dead"]
    assert len(store.list_jobs()) == 2
    assert store.list_jobs(limit=1)[0].id == max(j.id for j in store.list_jobs())
    counts = store.counts_by_state()
    assert (counts["queued"], counts["dead"], counts["succeeded"]) == (1, 1, 0)
    assert store.counts_by_outcome() == {"queued": 1, "ignored": 0, "invalid": 0}


def test_ping_answers(store: Store) -> None:
    store.ping()
    with store.session(readonly=True) as session:
        assert session.execute(text("SELECT 1")).scalar() == 1


def test_planned_refresh_key_is_the_job_target_key(store: Store) -> None:
    (planned, _) = match(RULES, event("e1"))
    assert isinstance(planned, PlannedRefresh)
    (result,) = write(store, submission("e1"))
    assert planned.key in {j.target_key for j in store.list_jobs()}
    assert result.refreshes_queued == 2


@pytest.mark.parametrize(
    "url", ["mysql+pymysql://relay:hunter2@db/relay", "not a url", "postgresql+psycopg2"]
)
def test_only_sqlite_and_postgresql_urls_are_accepted(url: str) -> None:
    with pytest.raises(ConfigError, match="database_url") as raised:
        Store(url)
    assert "hunter2" not in str(raised.value)


def test_in_memory_sqlite_works_across_threads() -> None:
    store = Store("sqlite://")
    store.migrate()

    async def main() -> Any:
        recorder = Recorder(store)
        recorder.start()
        try:
            return await recorder.record(submission("e1"))
        finally:
            recorder.stop()

    assert asyncio.run(main()).status == "queued"
    assert count(store, RefreshJob) == 2
    store.dispose()
