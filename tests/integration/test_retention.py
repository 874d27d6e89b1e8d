"""Retention prunes finished work older than its cut-off, and nothing else.

Rows are written with the times they would have had, on SQLite and on
PostgreSQL (the `store` fixture); one scene holds every case that must go
and every case that must stay.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from dbt_tableau_relay.config import parse_settings
from dbt_tableau_relay.errors import ConfigError
from dbt_tableau_relay.notifications import Notification
from dbt_tableau_relay.retention import Retention, cutoff, prune
from dbt_tableau_relay.runs import LineageJob, LineageJobEvent, RunRefresh
from dbt_tableau_relay.service import _once_per_cluster
from dbt_tableau_relay.store import Attempt, Event, RefreshJob, RefreshJobEvent, Store, utcnow

NOW = utcnow()
OLD = NOW - timedelta(days=40)
RECENT = NOW - timedelta(days=1)
BEFORE = cutoff(30, NOW)


@dataclass
class Scene:
    """What was written, by name: `gone` must be pruned, `kept` must stay."""

    events: dict[str, int] = field(default_factory=dict)
    jobs: dict[str, int] = field(default_factory=dict)
    lineage: dict[str, int] = field(default_factory=dict)


def add_event(store: Store, scene: Scene, name: str, at: datetime) -> int:
    with store.session() as session:
        row = Event(event_id=name, outcome="queued", body="{}", received_at=at, refreshes=1)
        session.add(row)
        session.flush()
        scene.events[name] = row.id
        return row.id


def add_job(
    store: Store,
    scene: Scene,
    name: str,
    state: str,
    *,
    at: datetime,
    events: tuple[str, ...] = (),
    attempts: int = 0,
) -> int:
    finished = at if state in ("succeeded", "failed", "dead", "merged") else None
    with store.session() as session:
        row = RefreshJob(
            target_kind="workbook",
            target_by="path",
            target_ref=name,
            target_key=f"workbook:path:{name}",
            rule_name="r",
            incremental=False,
            wait=True,
            state=state,
            attempts=attempts,
            not_before=at,
            created_at=at - timedelta(minutes=5),
            updated_at=at,
            finished_at=finished,
            last_event_at=at - timedelta(minutes=5),
        )
        session.add(row)
        session.flush()
        for n in range(attempts):
            session.add(
                Attempt(refresh_job_id=row.id, number=n + 1, started_at=at, outcome="transient")
            )
        for event in events:
            session.add(RefreshJobEvent(refresh_job_id=row.id, event_pk=scene.events[event]))
        scene.jobs[name] = row.id
        return row.id


def add_lineage(
    store: Store, scene: Scene, name: str, state: str, *, at: datetime, events: tuple[str, ...]
) -> None:
    finished = at if state in ("done", "failed", "dead") else None
    with store.session() as session:
        row = LineageJob(
            run_id=name,
            rule_name="downstream",
            sources="exposures",
            wait=True,
            incremental=False,
            state=state,
            not_before=at,
            created_at=at,
            updated_at=at,
            finished_at=finished,
            last_event_at=at,
        )
        session.add(row)
        session.flush()
        for event in events:
            session.add(LineageJobEvent(lineage_job_id=row.id, event_pk=scene.events[event]))
        scene.lineage[name] = row.id


def add_run_refresh(store: Store, run: str, at: datetime) -> None:
    with store.session() as session:
        session.add(RunRefresh(run_key=f"1:{run}", target_key="workbook:path:X", created_at=at))


def write_scene(store: Store) -> Scene:
    s = Scene()
    for name in ("e-done", "e-waiting", "e-shared", "e-replayed", "e-ignored", "e-lineage"):
        add_event(store, s, name, OLD)
    add_event(store, s, "e-lineage-waiting", OLD)
    add_event(store, s, "e-recent", RECENT)
    add_event(store, s, "e-recent-ignored", RECENT)
    # go: finished long ago, with their attempts and links
    add_job(store, s, "old-succeeded", "succeeded", at=OLD, events=("e-done",), attempts=2)
    add_job(store, s, "old-merged", "merged", at=OLD, events=("e-done",))
    replay = add_job(store, s, "old-replay", "succeeded", at=OLD, events=("e-replayed",))
    failed = add_job(store, s, "old-failed", "failed", at=OLD - timedelta(hours=1), attempts=1)
    with store.session() as session:
        session.get_one(RefreshJob, failed).replayed_as = replay
    add_job(store, s, "old-shared", "succeeded", at=OLD, events=("e-shared",))
    add_lineage(store, s, "old-lineage", "done", at=OLD, events=("e-lineage",))
    add_run_refresh(store, "old-run", OLD)
    # stay: unfinished, or finished since the cut-off, and what they serve
    add_job(store, s, "queued", "queued", at=OLD, events=("e-waiting",))
    add_job(store, s, "following", "following", at=OLD, events=("e-waiting",), attempts=1)
    add_job(store, s, "recent-shared", "succeeded", at=RECENT, events=("e-shared",))
    add_job(store, s, "recent", "dead", at=RECENT, events=("e-recent",), attempts=3)
    add_lineage(store, s, "lineage-waiting", "queued", at=OLD, events=("e-lineage-waiting",))
    add_run_refresh(store, "recent-run", RECENT)
    return s


KEPT_JOBS = {"queued", "following", "recent-shared", "recent"}
KEPT_EVENTS = {"e-waiting", "e-shared", "e-lineage-waiting", "e-recent", "e-recent-ignored"}


def names(store: Store, model: type[Event] | type[RefreshJob]) -> set[str]:
    column = Event.event_id if model is Event else RefreshJob.target_ref
    with store.session(readonly=True) as session:
        return {str(n) for n in session.scalars(select(column))}


def count(store: Store, model: type[object]) -> int:
    with store.session(readonly=True) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0  # type: ignore[arg-type]


@pytest.mark.parametrize("batch", [1, 500])
def test_prune_removes_finished_work_before_the_cutoff_and_keeps_the_rest(
    store: Store, batch: int
) -> None:
    scene = write_scene(store)
    pruned = prune(store, BEFORE, batch=batch, pause=0)
    assert names(store, RefreshJob) == KEPT_JOBS
    assert names(store, Event) == KEPT_EVENTS
    with store.session(readonly=True) as session:
        attempts = set(session.scalars(select(Attempt.refresh_job_id)))
        links = set(
            session.execute(select(RefreshJobEvent.refresh_job_id, RefreshJobEvent.event_pk))
        )
        lineage = set(session.scalars(select(LineageJob.run_id)))
        asks = set(session.scalars(select(RunRefresh.run_key)))
    assert attempts == {scene.jobs["following"], scene.jobs["recent"]}
    assert links == {
        (scene.jobs["queued"], scene.events["e-waiting"]),
        (scene.jobs["following"], scene.events["e-waiting"]),
        (scene.jobs["recent-shared"], scene.events["e-shared"]),
        (scene.jobs["recent"], scene.events["e-recent"]),
    }
    assert lineage == {"lineage-waiting"}
    assert count(store, LineageJobEvent) == 1
    assert asks == {"1:recent-run"}
    assert (pruned.refresh_jobs, pruned.attempts, pruned.lineage_jobs) == (5, 3, 1)
    assert (pruned.run_refreshes, pruned.events) == (1, 4)


def test_a_second_prune_finds_nothing(store: Store) -> None:
    write_scene(store)
    prune(store, BEFORE, pause=0)
    again = prune(store, BEFORE, pause=0)
    assert again.refresh_jobs + again.events + again.lineage_jobs + again.run_refreshes == 0


def test_an_old_event_stays_until_the_last_job_that_serves_it_goes(store: Store) -> None:
    write_scene(store)
    prune(store, BEFORE, pause=0)
    assert "e-shared" in names(store, Event)
    prune(store, cutoff(0.5, NOW), pause=0)  # now "recent-shared" is old enough too
    assert "e-shared" not in names(store, Event)
    assert "e-waiting" in names(store, Event)  # its jobs are still unfinished


def test_retention_prunes_on_one_replica_at_a_time(store: Store) -> None:
    write_scene(store)
    first = Retention(store, 30, holder="a").run_once()
    second = Retention(store, 30, holder="b").run_once()
    assert first is not None
    assert first.refresh_jobs == 5
    assert second is None


def test_days_default_to_30_and_null_keeps_everything(tmp_path: Path) -> None:
    base = "tableau: {server_url: http://127.0.0.1:1, token_name: n, token_secret: s}\n"
    assert parse_settings(base, {}).retention.days == 30
    keep = parse_settings(base + "retention: {days: null}\n", {})
    assert keep.retention.days is None
    with pytest.raises(ConfigError, match=r"retention\.days"):
        parse_settings(base + "retention: {days: 0}\n", {})
    store = Store(f"sqlite:///{tmp_path / 'relay.db'}")
    try:
        assert not _once_per_cluster(keep, store, "me", None, lambda: None)
        default = parse_settings(base, {})
        assert [type(s) for s in _once_per_cluster(default, store, "me", None, lambda: None)] == [
            Retention
        ]
    finally:
        store.dispose()


# -- SQLite: the space comes back ---------------------------------------------------------


def many_old_events(store: Store, n: int) -> None:
    rows = [
        {"event_id": f"old-{i}", "outcome": "ignored", "body": "x" * 900, "received_at": OLD}
        for i in range(n)
    ]
    with store.session() as session:
        session.execute(Event.__table__.insert(), rows)


def page_count(store: Store) -> int:
    with store.transaction() as conn:
        return int(conn.execute(text("PRAGMA page_count")).scalar() or 0)


def test_sqlite_gives_the_pruned_pages_back_to_the_disk(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'relay.db'}")
    try:
        store.migrate()
        many_old_events(store, 3000)
        grown = page_count(store)
        pruned = prune(store, BEFORE, pause=0)
        assert pruned.events == 3000
        assert pruned.pages_freed > 0
        assert page_count(store) < grown / 4
        with store.transaction() as conn:
            assert conn.execute(text("PRAGMA freelist_count")).scalar() == 0
    finally:
        store.dispose()


def test_an_older_sqlite_database_keeps_its_pages_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "relay.db"
    with sqlite3.connect(path) as conn:  # made before auto_vacuum: it has a table already
        conn.execute("CREATE TABLE made_by_an_older_relay (x)")
    store = Store(f"sqlite:///{path}")
    try:
        store.migrate()
        caplog.set_level(logging.WARNING, "dbt_tableau_relay.retention")
        for _ in range(2):
            many_old_events(store, 500)
            assert prune(store, BEFORE, pause=0).pages_freed == 0
    finally:
        store.dispose()
    assert [r.message for r in caplog.records].count("retention.vacuum_needed") == 1


def test_a_pruned_job_takes_its_notifications_with_it(store: Store) -> None:
    """notifications.refresh_job_id is a foreign key: its rows go first, the recent one stays."""
    scene = Scene()
    old = add_job(store, scene, "old-failed", "failed", at=OLD)
    recent = add_job(store, scene, "recent-failed", "failed", at=RECENT)
    with store.session() as session:
        for job_id, at in ((old, OLD), (recent, RECENT)):
            session.add(
                Notification(
                    refresh_job_id=job_id,
                    channel=0,
                    channel_kind="slack",
                    trigger="failed",
                    state="sent",
                    attempts=1,
                    not_before=at,
                    created_at=at,
                    sent_at=at,
                )
            )
    prune(store, BEFORE, pause=0)
    with store.session(readonly=True) as session:
        left = list(session.scalars(select(Notification.refresh_job_id)))
    assert left == [recent]
    assert names(store, RefreshJob) == {"recent-failed"}
