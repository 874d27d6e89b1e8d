"""What the relay keeps about dbt runs, beside events and refresh jobs.

- `lineage_jobs`: one per (run, lineage rule): the worker reads the run's
  artifacts and Tableau's lineage, decides, and queues ordinary refresh jobs;
  the decisions stay on the job as its explanation (JSON, `lineage.explain`).
- `run_refreshes`: which items a finished run has already asked to refresh, so
  that a run seen twice (its `errored` and its `completed` event, or the
  reconciler and then a late webhook) is one run, one set of refreshes.
- `relay_state`: small named values that must survive restarts (the
  reconciler's cursor).
- `leases`: named cluster-wide leases, so that what must run once per cluster
  runs on one replica at a time: `tableau` (the one replica that talks to
  Tableau, cluster.py), `reconcile` and `retention`.

The schema is created by migration 0003 (0005 indexes `lineage_job_events.event_pk`).
"""

from __future__ import annotations

import functools
import json
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Connection,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    or_,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from dbt_tableau_relay.store import Base, BigId, Store, sqlite_time, utcnow

LINEAGE_STATES: Final = ("queued", "resolving", "done", "failed", "dead")


class LineageJob(Base):
    """Find and queue what one lineage rule refreshes for one dbt run."""

    __tablename__ = "lineage_jobs"
    __table_args__ = (UniqueConstraint("run_id", "rule_name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[str | None] = mapped_column(String(64))
    dbt_job_id: Mapped[str | None] = mapped_column(String(64))
    rule_name: Mapped[str] = mapped_column(String(255))
    sources: Mapped[str] = mapped_column(String(64))  # "exposures,tableau_lineage"
    wait: Mapped[bool] = mapped_column(Boolean)
    incremental: Mapped[bool] = mapped_column(Boolean)
    state: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    explanation: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    last_event_at: Mapped[datetime]


class LineageJobEvent(Base):
    """Which events asked for a lineage job."""

    __tablename__ = "lineage_job_events"

    lineage_job_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("lineage_jobs.id"), primary_key=True
    )
    # Looked up from the event side: retention keeps an event a job still serves.
    event_pk: Mapped[int] = mapped_column(
        BigId, ForeignKey("events.id"), primary_key=True, index=True
    )


class RunRefresh(Base):
    """A finished run has asked for this once: an item's refresh, or a lineage rule."""

    __tablename__ = "run_refreshes"

    run_key: Mapped[str] = mapped_column(String(140), primary_key=True)  # "account:run"
    target_key: Mapped[str] = mapped_column(String(600), primary_key=True)
    created_at: Mapped[datetime]


class RelayState(Base):
    __tablename__ = "relay_state"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]


class Lease(Base):
    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    until: Mapped[datetime]


_PG_CLAIM_ASKS: Final = text(
    "INSERT INTO run_refreshes (run_key, target_key, created_at)"
    " SELECT r->>0, r->>1, CAST(:now AS timestamptz)"
    " FROM json_array_elements(CAST(:rows AS json)) AS r"
    " ON CONFLICT DO NOTHING RETURNING run_key, target_key"
)


def claim_run_asks(
    conn: Connection, asks: set[tuple[str, str]], now: datetime
) -> set[tuple[str, str]]:
    """Record (run key, target key) pairs; the ones no earlier event of the run had asked for.

    On PostgreSQL the insert itself decides (replicas race on the primary key);
    SQLite's writer holds the database lock, so a look first is exact there.
    """
    if conn.dialect.name == "postgresql":
        rows = {"rows": json.dumps(sorted(asks)), "now": now.isoformat()}
        return {(run, key) for run, key in conn.execute(_PG_CLAIM_ASKS, rows)}
    runs = sorted({run for run, _ in asks})
    marks = ", ".join("?" * len(runs))
    seen = conn.exec_driver_sql(
        f"SELECT run_key, target_key FROM run_refreshes WHERE run_key IN ({marks})",  # noqa: S608
        tuple(runs),
    ).all()
    fresh = asks - {(run, key) for run, key in seen}
    if fresh:  # one multi-row statement, no per-row Python work (the recorder's hot path)
        at = sqlite_time(now)
        values = tuple(v for run, key in sorted(fresh) for v in (run, key, at))
        conn.exec_driver_sql(_sqlite_insert_asks(len(fresh)), values)
    return fresh


@functools.lru_cache(maxsize=64)
def _sqlite_insert_asks(count: int) -> str:
    rows = ", ".join(["(?, ?, ?)"] * count)
    return f"INSERT INTO run_refreshes (run_key, target_key, created_at) VALUES {rows}"  # noqa: S608


def take_lease(store: Store, name: str, holder: str, seconds: float) -> bool:
    """Hold the cluster-wide lease `name` for `seconds`; False if another holder has it.

    Taking it again before it runs out renews it. Works the same on SQLite and
    PostgreSQL: the row is created once, then updated only when free or ours.
    """
    now = utcnow()
    until = now + timedelta(seconds=seconds)
    try:
        with store.session() as session:
            row = session.scalar(select(Lease).where(Lease.name == name).with_for_update())
            if row is None:
                session.add(Lease(name=name, holder=holder, until=until))
                return True
            if row.holder != holder and row.until > now:
                return False
            row.holder, row.until = holder, until
            return True
    except IntegrityError:  # another replica created the row first: it holds the lease
        return False


def read_lease(store: Store, name: str) -> tuple[str, datetime] | None:
    """Who holds (or last held) the lease `name`, and until when; None if nobody ever did."""
    with store.session(readonly=True) as session:
        row = session.scalar(select(Lease).where(Lease.name == name))
        return None if row is None else (row.holder, row.until)


def release_lease(store: Store, name: str, holder: str) -> None:
    with store.session() as session:
        row = session.scalar(select(Lease).where(Lease.name == name, Lease.holder == holder))
        if row is not None:
            row.until = utcnow()


def read_state(store: Store, name: str) -> str | None:
    with store.session(readonly=True) as session:
        return session.scalar(select(RelayState.value).where(RelayState.name == name))


def write_state(store: Store, name: str, value: str) -> None:
    with store.session() as session:
        row = session.get(RelayState, name)
        if row is None:
            session.add(RelayState(name=name, value=value, updated_at=utcnow()))
        else:
            row.value, row.updated_at = value, utcnow()


def due_lineage(now: datetime) -> ColumnElement[bool]:
    """The claim predicate: queued and due, or resolving under a lapsed lease."""
    lj = LineageJob
    return or_(
        (lj.state == "queued") & (lj.not_before <= now),
        (lj.state == "resolving") & (lj.lease_until < now),
    )


def lineage_jobs_of_run(store: Store, run_id: str) -> list[LineageJob]:
    """The run's lineage jobs, oldest first."""
    query = select(LineageJob).where(LineageJob.run_id == run_id).order_by(LineageJob.id)
    with store.session(readonly=True) as session:
        return list(session.scalars(query))
