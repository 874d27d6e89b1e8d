"""Retention: finished work older than `retention.days` is pruned, a little at a time.

What goes, once older than the cut-off:
- refresh jobs in a final state (succeeded, failed, dead, merged) that
  finished before it, with their attempts and their links to events;
- lineage jobs in a final state (done, failed, dead), with their links;
- `run_refreshes` rows (which items a run has already asked for);
- events received before it that no remaining job serves: an event stays
  as long as any job that serves it is kept (unfinished, or finished since),
  so every job kept still shows all its events.

Everything else stays: unfinished jobs, newer rows, `relay_state`, `leases`.
A failed or dead job is replayable until it is pruned.

Each batch (`BATCH` rows) is one short transaction, with a pause after it,
so the webhook's writes never wait long behind a prune: on SQLite the writer
lock is held for a few milliseconds at a time, on PostgreSQL only the rows
pruned are locked. One replica prunes, the holder of the `retention` lease,
once every `EVERY` seconds.

SQLite keeps pages it freed inside the file and reuses them for new rows,
so under a steady stream the file stops growing once a retention period's
rows fill it. To give the space back too, databases created by this
version run with `auto_vacuum=INCREMENTAL` (store.py), and after a prune
the freed pages are returned to the disk `VACUUM_PAGES` at a time. An older
database keeps its pages (said once, `retention.vacuum_needed`): a `VACUUM`
while the relay is stopped converts it (docs/storage.md).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, delete, exists, func, select, tuple_, update
from sqlalchemy.orm import Session

from dbt_tableau_relay.notifications import Notification
from dbt_tableau_relay.periodic import Periodic
from dbt_tableau_relay.queue import FINAL_STATES
from dbt_tableau_relay.runs import LineageJob, LineageJobEvent, RunRefresh, take_lease
from dbt_tableau_relay.store import Attempt, Event, RefreshJob, RefreshJobEvent, Store, utcnow

log = logging.getLogger(__name__)

LEASE: Final = "retention"
EVERY: Final = 3600.0  # seconds between two prunes
BATCH: Final = 500  # rows per transaction
PAUSE: Final = 0.1  # seconds between two transactions
VACUUM_PAGES: Final = 256  # SQLite pages (4 KiB) given back per transaction
LINEAGE_FINAL: Final = ("done", "failed", "dead")
SQLITE_INCREMENTAL: Final = 2  # PRAGMA auto_vacuum's value for INCREMENTAL

RJ, LJ = RefreshJob, LineageJob


@dataclass
class Pruned:
    """What one prune removed."""

    refresh_jobs: int = 0
    attempts: int = 0
    lineage_jobs: int = 0
    run_refreshes: int = 0
    events: int = 0
    pages_freed: int = 0  # SQLite pages given back to the disk

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def cutoff(days: float, now: datetime | None = None) -> datetime:
    """The time before which finished work is pruned."""
    return (now or utcnow()) - timedelta(days=days)


def prune(
    store: Store,
    before: datetime,
    *,
    batch: int = BATCH,
    pause: float = PAUSE,
    stop: threading.Event | None = None,
) -> Pruned:
    """Prune what finished before `before` (see the module's docstring), batch by batch."""
    stop = stop or threading.Event()
    pruned = Pruned()
    steps: list[Callable[[Session, Any], Any]] = [
        lambda s, after: _refresh_jobs(s, before, after, batch, pruned),
        lambda s, after: _lineage_jobs(s, before, after, batch, pruned),
        lambda s, after: _run_refreshes(s, before, after, batch, pruned),
        lambda s, after: _events(s, before, after, batch, pruned),
    ]
    for step in steps:
        cursor = None
        while not stop.is_set():
            with store.session() as session:
                cursor = step(session, cursor)
            if cursor is None:
                break
            stop.wait(pause)
    if store.dialect == "sqlite" and not stop.is_set():
        pruned.pages_freed = give_back_space(store, pause=pause, stop=stop)
    return pruned


def _refresh_jobs(
    session: Session, before: datetime, after: int | None, batch: int, pruned: Pruned
) -> int | None:
    finished = func.coalesce(RJ.finished_at, RJ.updated_at) < before
    pick = select(RJ.id).where(RJ.id > (after or 0), RJ.state.in_(FINAL_STATES), finished)
    ids = list(session.scalars(pick.order_by(RJ.id).limit(batch)))
    if not ids:
        return None
    # A replayed job names its replay; both are old and go together (a replay is newer).
    replayed = RJ.state.in_(("failed", "dead")) & RJ.replayed_as.in_(ids)
    session.execute(update(RJ).where(replayed).values(replayed_as=None))
    pruned.attempts += _count(
        session.execute(delete(Attempt).where(Attempt.refresh_job_id.in_(ids)))
    )
    session.execute(delete(RefreshJobEvent).where(RefreshJobEvent.refresh_job_id.in_(ids)))
    # Its messages went out (or were given up on) long before the job is this old.
    session.execute(delete(Notification).where(Notification.refresh_job_id.in_(ids)))
    pruned.refresh_jobs += _count(session.execute(delete(RJ).where(RJ.id.in_(ids))))
    return ids[-1]


def _lineage_jobs(
    session: Session, before: datetime, after: int | None, batch: int, pruned: Pruned
) -> int | None:
    finished = func.coalesce(LJ.finished_at, LJ.updated_at) < before
    pick = select(LJ.id).where(LJ.id > (after or 0), LJ.state.in_(LINEAGE_FINAL), finished)
    ids = list(session.scalars(pick.order_by(LJ.id).limit(batch)))
    if not ids:
        return None
    session.execute(delete(LineageJobEvent).where(LineageJobEvent.lineage_job_id.in_(ids)))
    pruned.lineage_jobs += _count(session.execute(delete(LJ).where(LJ.id.in_(ids))))
    return ids[-1]


def _run_refreshes(
    session: Session,
    before: datetime,
    after: tuple[str, str] | None,
    batch: int,
    pruned: Pruned,
) -> tuple[str, str] | None:
    key = tuple_(RunRefresh.run_key, RunRefresh.target_key)
    pick = select(RunRefresh.run_key, RunRefresh.target_key).where(RunRefresh.created_at < before)
    if after is not None:
        pick = pick.where(key > tuple_(*after))
    order = (RunRefresh.run_key, RunRefresh.target_key)
    rows = [(r, t) for r, t in session.execute(pick.order_by(*order).limit(batch))]
    if not rows:
        return None
    pruned.run_refreshes += _count(session.execute(delete(RunRefresh).where(key.in_(rows))))
    return rows[-1]


def _events(
    session: Session, before: datetime, after: int | None, batch: int, pruned: Pruned
) -> int | None:
    pick = select(Event.id).where(Event.id > (after or 0), Event.received_at < before)
    ids = list(session.scalars(pick.order_by(Event.id).limit(batch)))
    if not ids:
        return None
    served = exists().where(RefreshJobEvent.event_pk == Event.id)
    asked = exists().where(LineageJobEvent.event_pk == Event.id)
    gone = delete(Event).where(Event.id.in_(ids), ~served, ~asked)
    pruned.events += _count(session.execute(gone))
    return ids[-1]


def _count(result: Any) -> int:
    return int(result.rowcount)


# -- SQLite: giving the space back ------------------------------------------------


_said_vacuum_needed: set[str] = set()  # the databases it was said of, once each


def give_back_space(store: Store, *, pause: float = PAUSE, stop: threading.Event) -> int:
    """Return SQLite's free pages to the disk a few at a time; how many were returned."""
    with store.transaction() as conn:
        mode = conn.exec_driver_sql("PRAGMA auto_vacuum").scalar()
        free = int(conn.exec_driver_sql("PRAGMA freelist_count").scalar() or 0)
    if mode != SQLITE_INCREMENTAL:
        if free and store.url not in _said_vacuum_needed:
            _said_vacuum_needed.add(store.url)
            log.warning(
                "retention.vacuum_needed",
                extra={"free_pages": free, "hint": "VACUUM while stopped (docs/storage.md)"},
            )
        return 0
    returned = 0
    while free > 0 and not stop.is_set():
        with store.transaction() as conn:
            returned += _vacuum_some(conn, min(free, VACUUM_PAGES))
            free = int(conn.exec_driver_sql("PRAGMA freelist_count").scalar() or 0)
        stop.wait(pause)
    if returned:
        _checkpoint(store)
    return returned


def _checkpoint(store: Store) -> None:
    """Copy the WAL into the file now: the file shrinks to its new size at a checkpoint.

    PASSIVE: it waits for no reader or writer, and leaves the rest to SQLite's
    next automatic checkpoint if one is in the way.
    """
    with store.engine.connect() as conn:  # outside a transaction, as a checkpoint must be
        raw: Any = conn.connection.driver_connection
        raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _vacuum_some(conn: Connection, pages: int) -> int:
    # Python's sqlite3 steps a PRAGMA once, and one step of incremental_vacuum
    # frees one page, whatever its argument: so one page per statement.
    for _ in range(pages):
        conn.exec_driver_sql("PRAGMA incremental_vacuum(1)")
    return pages


# -- the service ---------------------------------------------------------------------


class Retention(Periodic):
    """Prunes every `every` seconds on a thread of its own, on one replica at a time."""

    name = "retention"

    def __init__(self, store: Store, days: float, *, holder: str, every: float = EVERY) -> None:
        self.store, self.days, self.holder, self.every = store, days, holder, every
        super().__init__()

    def run_once(self) -> Pruned | None:
        """One prune if this replica holds the `retention` lease; None if another does."""
        if not take_lease(self.store, LEASE, self.holder, seconds=3 * self.every):
            return None
        before = cutoff(self.days)
        pruned = prune(self.store, before, stop=self._stopping)
        log.info("retention.pruned", extra={"before": before.isoformat(), **pruned.as_dict()})
        return pruned
