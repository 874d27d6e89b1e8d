"""The hot path's durable write: group commit of received webhooks.

Requests hand a `Submission` to `Recorder.record()` and await it. One writer
thread drains the queue and writes everything pending in ONE transaction:
each event with all its refresh jobs and links, so an event is never stored
without its jobs, and one fsync serves a whole batch (the way databases
group-commit their own log). Then it resolves each request's future on its
event loop. If the transaction fails, every request in the batch gets the
exception and nothing of the batch is stored.

Coalescing uses the partial unique index on `refresh_jobs(target_key) WHERE
state = 'queued'`: `INSERT ... ON CONFLICT ... DO UPDATE` joins the queued job
of an item or creates it, which stays correct with several replicas writing
to one PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import queue
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final, Literal

from prometheus_client import Histogram
from sqlalchemy import Connection, insert, text

from dbt_tableau_relay.errors import RelayError
from dbt_tableau_relay.events import DbtEvent
from dbt_tableau_relay.rules import Ask, PlannedLineage, PlannedRefresh, join
from dbt_tableau_relay.runs import LineageJob, LineageJobEvent, claim_run_asks
from dbt_tableau_relay.store import (
    Base,
    Event,
    Store,
    insert_links,
    queued_job_row,
    queued_job_upsert,
    sqlite_time,
    storable,
    utcnow,
)

log = logging.getLogger(__name__)

Status = Literal["queued", "ignored", "duplicate", "invalid"]
MAX_BATCH: Final = 256
MAX_PENDING: Final = 10_000
_STOP: Final = object()
_EVENTS = Base.metadata.tables[Event.__tablename__]

BATCH_SIZE = Histogram(
    "relay_recorder_batch_size",
    "Webhooks written per group commit.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)
BATCH_SECONDS = Histogram("relay_recorder_batch_seconds", "Time to write one group commit.")


@dataclass(frozen=True, slots=True)
class Submission:
    """A signed body to record: a parsed event with its plan, or the parse error."""

    body: bytes
    received_at: datetime
    event: DbtEvent | None = None
    planned: tuple[PlannedRefresh, ...] = ()
    error: str | None = None  # why the body is not a dbt event
    lineage: tuple[PlannedLineage, ...] = ()
    # The event's run had already asked for everything it asks for (see runs.py).
    repeated_run: bool = False

    @property
    def asks(self) -> bool:
        return bool(self.planned or self.lineage)


@dataclass(frozen=True, slots=True)
class Recorded:
    status: Status
    event_pk: int | None = None  # None for a duplicate delivery: nothing was stored
    job_ids: tuple[int, ...] = ()
    lineage_ids: tuple[int, ...] = ()

    @property
    def refreshes_queued(self) -> int:
        return len(self.job_ids)


@dataclass(slots=True)
class _Pending:
    submission: Submission
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Recorded]


class Recorder:
    """Owns the writer thread. `start()`, `await record(...)`, `stop()` (drains)."""

    def __init__(
        self, store: Store, *, max_batch: int = MAX_BATCH, max_pending: int = MAX_PENDING
    ) -> None:
        self.store = store
        self.max_batch = max_batch
        self._queue: queue.Queue[_Pending | object] = queue.Queue(max_pending)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._listeners: list[Callable[[], None]] = []

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call `callback` (on the writer thread) after each batch that queued refreshes.

        The worker listens, so a new job is sent at once rather than at its next poll.
        """
        self._listeners.append(callback)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the recorder is already started")
        self._thread = threading.Thread(target=self._run, name="relay-recorder", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Write everything already submitted, then end the writer thread."""
        if self._thread is None or self._stopping:
            return
        self._stopping = True
        self._queue.put(_STOP)
        self._thread.join(timeout)

    async def record(self, submission: Submission) -> Recorded:
        """Store durably; return once committed. Raises if the write failed."""
        if not self.running:
            raise RelayError("the recorder is not running")
        loop = asyncio.get_running_loop()
        pending = _Pending(submission, loop, loop.create_future())
        try:
            self._queue.put_nowait(pending)
        except queue.Full:
            raise RelayError("too many webhooks waiting to be recorded") from None
        return await pending.future

    def _run(self) -> None:
        while True:
            batch, stop = self._next_batch()
            if batch:
                self._write(batch)
            if stop:
                break
        self._fail_leftovers()

    def _next_batch(self) -> tuple[list[_Pending], bool]:
        """Block for one submission, then take whatever else is already waiting."""
        first = self._queue.get()
        if first is _STOP:
            return [], True
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return _pending(batch), True
            batch.append(item)
        return _pending(batch), False

    def _write(self, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        subs = [p.submission for p in batch]
        try:
            with self.store.transaction() as conn:
                results: Sequence[Recorded | BaseException] = write_batch(conn, subs)
        except Exception as exc:  # noqa: BLE001 - each waiting request gets the failure
            log.warning("recorder.batch_failed", extra={"size": len(batch), "error": repr(exc)})
            results = [exc] * len(batch)
        _settle(batch, results)
        BATCH_SIZE.observe(len(batch))
        BATCH_SECONDS.observe(time.perf_counter() - started)
        # One line per group commit, not per webhook: at 1,000+ a second,
        # formatting a line each would cost a sixth of the relay's throughput.
        counts: dict[str, int] = Counter(r.status for r in results if isinstance(r, Recorded))
        if counts:
            # The batch's dbt runs, so that one grep of a run id finds where it was recorded.
            runs = ",".join(
                dict.fromkeys(s.event.run_id for s in subs if s.event and s.event.run_id)
            )
            log.info("recorder.batch", extra={"size": len(batch), **counts, "runs": runs})
        if any(isinstance(r, Recorded) and (r.job_ids or r.lineage_ids) for r in results):
            for callback in self._listeners:
                callback()

    def _fail_leftovers(self) -> None:
        """Submissions that raced `stop()` get an error rather than waiting forever."""
        leftovers: list[_Pending] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Pending):
                leftovers.append(item)
        _settle(leftovers, [RelayError("the recorder stopped")] * len(leftovers))


def _pending(items: list[object]) -> list[_Pending]:
    return [item for item in items if isinstance(item, _Pending)]


def _settle(batch: Sequence[_Pending], results: Sequence[Recorded | BaseException]) -> None:
    """Resolve futures on their own loops: one thread-safe call per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Recorded], Any]]]
    by_loop = defaultdict(list)
    for pending, result in zip(batch, results, strict=True):
        by_loop[pending.loop].append((pending.future, result))
    for loop, pairs in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, pairs)
        except RuntimeError:  # the loop has closed: nobody is waiting any more
            continue


def _resolve(pairs: list[tuple[asyncio.Future[Recorded], Recorded | BaseException]]) -> None:
    for future, result in pairs:
        if future.done():  # the request timed out or was cancelled
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)


def write_batch(
    conn: Connection, submissions: Sequence[Submission], now: datetime | None = None
) -> list[Recorded]:
    """Write a batch in the caller's transaction; one `Recorded` per submission, in order."""
    now = now or utcnow()
    submissions = once_per_run(conn, submissions, now)
    early, rows = _plan(submissions)
    pks = _insert_events(conn, rows)
    jobs = _upsert_jobs(conn, submissions, pks, now)
    links = [
        (jobs[p.key], pk) for i, pk in pks.items() if pk is not None for p in submissions[i].planned
    ]
    if links:
        insert_links(conn, links)
    lineage = _insert_lineage_jobs(conn, submissions, pks, now)
    return [
        _result(submissions[i], r, pks.get(i), jobs, lineage.get(i, ()))
        for i, r in enumerate(early)
    ]


def once_per_run(
    conn: Connection, submissions: Sequence[Submission], now: datetime
) -> list[Submission]:
    """Drop what a finished run already asked for, in an earlier event or earlier in the batch.

    dbt sends `errored` and then `completed` for one failed run, and the
    reconciler may record a run before its late webhook: one run, one set of
    refreshes. Started events are left alone (a run that starts is not done).
    """
    asking = {i: keys for i, sub in enumerate(submissions) if (keys := _ask_keys(sub))}
    if not asking:
        return list(submissions)
    runs = {i: run_key(submissions[i]) for i in asking}
    fresh = claim_run_asks(conn, {(runs[i], k) for i, keys in asking.items() for k in keys}, now)
    pruned = list(submissions)
    for i, keys in asking.items():
        kept = {k for k in keys if (runs[i], k) in fresh}
        fresh -= {(runs[i], k) for k in kept}  # the first asker in the batch takes it
        if len(kept) < len(keys):
            pruned[i] = _pruned(submissions[i], kept)
    return pruned


def run_key(sub: Submission) -> str:
    assert sub.event is not None
    return f"{sub.event.account_id or ''}:{sub.event.run_id}"


def _ask_keys(sub: Submission) -> list[str]:
    """The once-per-run keys of what a finished run's event asks for."""
    ev = sub.event
    if ev is None or ev.run_id is None or ev.event_type == "job.run.started":
        return []
    return [p.key for p in sub.planned] + [f"rule:{p.rule_name}" for p in sub.lineage]


def _pruned(sub: Submission, kept: set[str]) -> Submission:
    planned = tuple(p for p in sub.planned if p.key in kept)
    lineage = tuple(p for p in sub.lineage if f"rule:{p.rule_name}" in kept)
    repeated = sub.asks and not (planned or lineage)
    return replace(sub, planned=planned, lineage=lineage, repeated_run=repeated)


def _insert_lineage_jobs(
    conn: Connection, submissions: Sequence[Submission], pks: dict[int, int | None], now: datetime
) -> dict[int, tuple[int, ...]]:
    """A lineage job per (run, rule) asked for, linked to its event; batch index -> job ids."""
    made: dict[int, tuple[int, ...]] = {}
    for i, pk in pks.items():
        sub = submissions[i]
        if pk is None or not sub.lineage:
            continue
        ids = []
        for plan in sub.lineage:
            job_id = conn.execute(_INSERT_LINEAGE_JOB, _lineage_row(sub, plan, now)).scalar_one()
            conn.execute(_LINK_LINEAGE_EVENT, {"lineage_job_id": job_id, "event_pk": pk})
            ids.append(job_id)
        made[i] = tuple(ids)
    return made


def _lineage_row(sub: Submission, plan: PlannedLineage, now: datetime) -> dict[str, Any]:
    assert sub.event is not None
    return {
        "run_id": sub.event.run_id,
        "account_id": sub.event.account_id,
        "dbt_job_id": sub.event.job_id,
        "rule_name": plan.rule_name,
        "sources": ",".join(plan.sources),
        "wait": plan.wait,
        "incremental": plan.incremental,
        "state": "queued",
        "attempts": 0,
        "not_before": now,
        "created_at": now,
        "updated_at": now,
        "last_event_at": sub.received_at,
    }


def _plan(
    submissions: Sequence[Submission],
) -> tuple[list[Recorded | None], dict[int, dict[str, Any]]]:
    """Results known before writing (repeats within the batch), and the rows to insert."""
    early: list[Recorded | None] = [None] * len(submissions)
    rows: dict[int, dict[str, Any]] = {}  # batch index -> event row
    seen: set[str] = set()
    for i, sub in enumerate(submissions):
        if sub.event is not None and sub.event.event_id in seen:
            early[i] = Recorded("duplicate")
            continue
        if sub.event is not None:
            seen.add(sub.event.event_id)
        rows[i] = _event_row(sub)
    return early, rows


def _event_row(sub: Submission) -> dict[str, Any]:
    ev = sub.event
    if ev is None:
        outcome, detail = "invalid", sub.error or "not a dbt Cloud event"
    elif sub.asks:
        outcome, detail = "queued", None
    elif sub.repeated_run:
        outcome, detail = "ignored", f"run {ev.run_id} already asked for these refreshes"
    else:
        outcome = "ignored"
        detail = f"no rule matches {ev.event_type} with runStatusCode {ev.run_status_code}"
    return {
        **{name: getattr(ev, name) if ev else None for name in _EVENT_FIELDS},
        "outcome": outcome,
        "detail": detail and storable(detail),
        "body": storable(sub.body.decode("utf-8", errors="replace")),
        "received_at": sub.received_at,
        "refreshes": len(sub.planned) if ev else 0,
    }


def _insert_events(conn: Connection, rows: dict[int, dict[str, Any]]) -> dict[int, int | None]:
    """Insert; map batch index -> new pk, or None for an event id already stored."""
    pks: dict[int, int | None] = {}
    dbt = {i: row for i, row in rows.items() if row["event_id"] is not None}
    if dbt:
        by_event_id = _insert_dbt_events(conn, list(dbt.values()))
        pks.update({i: by_event_id.get(row["event_id"]) for i, row in dbt.items()})
    for i in rows.keys() - dbt.keys():  # invalid bodies have no event id to match on: rare
        pks[i] = conn.execute(_INSERT_ONE_EVENT, rows[i]).scalar_one()
    return pks


def _upsert_jobs(
    conn: Connection,
    submissions: Sequence[Submission],
    pks: dict[int, int | None],
    now: datetime,
) -> dict[str, int]:
    """Join or create the queued job of every target; map target key -> job id."""
    wanted: dict[str, dict[str, Any]] = {}
    for i, pk in pks.items():
        for p in submissions[i].planned if pk is not None else ():
            at = submissions[i].received_at
            if (row := wanted.get(p.key)) is None:
                wanted[p.key] = _job_row(p, at, now)
                continue
            # The batch's events join one job, as they would one after another.
            kept = Ask(row["wait"], row["incremental"], row["last_event_at"])
            row.update(join(kept, Ask(p.wait, p.incremental, at))._asdict())
    if not wanted:
        return {}
    # Sorted keys: replicas upserting the same items lock them in one order.
    returned = conn.execute(
        queued_job_upsert(conn.dialect.name), [wanted[k] for k in sorted(wanted)]
    )
    return {key: job_id for job_id, key in returned}


def _job_row(p: PlannedRefresh, last_event_at: datetime, now: datetime) -> dict[str, Any]:
    t = p.target
    return queued_job_row(
        kind=t.kind,
        by=t.by,
        ref=t.ref,
        key=p.key,
        rule_name=p.rule_name,
        incremental=p.incremental,
        wait=p.wait,
        last_event_at=last_event_at,
        now=now,
    )


def _result(
    sub: Submission,
    early: Recorded | None,
    pk: int | None,
    jobs: dict[str, int],
    lineage: tuple[int, ...],
) -> Recorded:
    if early is not None:
        return early
    if pk is None:
        return Recorded("duplicate")
    if sub.event is None:
        return Recorded("invalid", pk)
    if sub.repeated_run:
        return Recorded("duplicate", pk)
    if not sub.asks:
        return Recorded("ignored", pk)
    return Recorded("queued", pk, tuple(jobs[p.key] for p in sub.planned), lineage)


# --- SQL -----------------------------------------------------------------------
# The writer's cost per event bounds throughput, so the rows-per-event
# statements skip SQLAlchemy's per-row Python work (links: `store.insert_links`):
# - PostgreSQL gets the rows as ONE JSON parameter (json_to_recordset): the
#   statement text never changes, so psycopg parses it once, not per batch.
# - SQLite gets plain multi-row VALUES, and no RETURNING: SQLite returns rows one
#   step at a time, and each step releases the GIL, which the writer must then
#   wait to get back from the busy event loop. Holding the write lock (BEGIN
#   IMMEDIATE), the new ids are simply those above the old maximum.

# The DbtEvent fields that have an `events` column of the same name.
_EVENT_FIELDS: Final = (
    "event_id",
    "event_type",
    "account_id",
    "project_id",
    "environment_id",
    "job_id",
    "run_id",
    "run_status_code",
)
# Every column the recorder writes, with its PostgreSQL type for json_to_recordset.
_PG_TYPES: Final = {
    **dict.fromkeys(_EVENT_FIELDS, "varchar"),
    "run_status_code": "integer",
    "outcome": "varchar",
    "detail": "text",
    "body": "text",
    "received_at": "timestamptz",
    "refreshes": "integer",
}
_COLUMNS: Final = ", ".join(_PG_TYPES)
_PG_INSERT_EVENTS: Final = text(
    f"INSERT INTO events ({_COLUMNS}) SELECT {_COLUMNS} FROM json_to_recordset("  # noqa: S608 - constant names
    f"CAST(:rows AS json)) AS r({', '.join(f'{n} {t}' for n, t in _PG_TYPES.items())})"
    " ON CONFLICT (event_id) DO NOTHING RETURNING id, event_id"
)
_SQLITE_INSERTED: Final = (
    "SELECT json_group_array(json_array(id, event_id)) FROM events WHERE id > ?"
)
_INSERT_ONE_EVENT: Final = _EVENTS.insert().returning(_EVENTS.c.id)
_INSERT_LINEAGE_JOB: Final = insert(LineageJob).returning(LineageJob.id)
_LINK_LINEAGE_EVENT: Final = insert(LineageJobEvent)


def _insert_dbt_events(conn: Connection, rows: list[dict[str, Any]]) -> dict[str, int]:
    """event_id -> new pk of each row inserted; ids already stored are left out.

    The store only opens SQLite and PostgreSQL: anything not PostgreSQL is SQLite.
    """
    if conn.dialect.name == "postgresql":
        encoded = json.dumps([r | {"received_at": r["received_at"].isoformat()} for r in rows])
        return {eid: pk for pk, eid in conn.execute(_PG_INSERT_EVENTS, {"rows": encoded})}
    before = conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM events").scalar_one()
    values = [sqlite_time(r[k]) if k == "received_at" else r[k] for r in rows for k in _PG_TYPES]
    conn.exec_driver_sql(_sqlite_insert_events(len(rows)), tuple(values))
    inserted = conn.exec_driver_sql(_SQLITE_INSERTED, (before,)).scalar_one()
    return {eid: pk for pk, eid in json.loads(inserted)}


@functools.lru_cache(maxsize=MAX_BATCH)
def _sqlite_insert_events(count: int) -> str:
    row = f"({', '.join('?' * len(_PG_TYPES))})"
    return (
        f"INSERT INTO events ({_COLUMNS}) VALUES {', '.join([row] * count)}"  # noqa: S608 - constant names
        " ON CONFLICT (event_id) DO NOTHING"
    )
