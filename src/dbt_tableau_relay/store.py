"""The durable store: schema, engine set-up, migrations and read helpers.

SQLite by default, PostgreSQL (`postgresql+psycopg://`) for several replicas,
the same code on both. Durability is the point: an event the relay has
acknowledged must survive a power cut, so SQLite runs in WAL mode with
`synchronous=FULL`, and every SQLite write transaction starts with
`BEGIN IMMEDIATE` (a deferred transaction that later writes can fail at once
with "database is locked" instead of waiting for `busy_timeout`).

Timestamps are timezone-aware UTC on both backends (`UTCDateTime`). The
worker's queue operations live in `queue.py`, against this schema.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    BigInteger,
    Boolean,
    Connection,
    DateTime,
    Dialect,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    case,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    selectinload,
    sessionmaker,
)
from sqlalchemy.pool import StaticPool

from dbt_tableau_relay.config import hide_password
from dbt_tableau_relay.errors import ConfigError, DatabaseError
from dbt_tableau_relay.states import JOB_STATES as JOB_STATES
from dbt_tableau_relay.states import JobState
from dbt_tableau_relay.store_errors import translated

EVENT_OUTCOMES: Final = ("queued", "ignored", "invalid")
SQLITE_BUSY_TIMEOUT_MS: Final = 10_000
_MIGRATIONS = Path(__file__).with_name("migrations")
_READONLY = "relay_readonly"  # an execution option: begin SQLite reads DEFERRED
_MIGRATION_LOCK = 0x7265_6C61_79  # "relay": serialises migrations of several replicas
# The partial index's predicate, and the upsert's.
QUEUED_ONLY: Final = f"state = '{JobState.QUEUED}'"

# A BIGINT id everywhere but SQLite, whose rowid alias must be spelled INTEGER.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out; naive values are refused on the way in.

    PostgreSQL stores `timestamptz`; SQLite stores naive UTC text, which sorts
    and compares correctly as text.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: the store keeps aware UTC times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def sqlite_time(value: datetime) -> str:
    """The text `UTCDateTime` stores on SQLite (SQLAlchemy's DATETIME format, naive UTC)."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def storable(value: str) -> str:
    """Text both backends accept: no NUL (PostgreSQL refuses it), no lone surrogates."""
    return value.encode("utf-8", errors="replace").decode("utf-8").replace("\x00", "\ufffd")


MAX_TEXT: Final = 65_536  # characters kept of a TEXT value from a third party (Tableau's notes)
_INT32: Final = range(-(2**31), 2**31)


def fit(model: type[Base], values: dict[str, Any]) -> dict[str, Any]:
    """`values` for `model`'s columns, so that what a third party sent never fails a write.

    Each string is made `storable` and cut to its column's length (TEXT: `MAX_TEXT`),
    ending in an ellipsis when cut; an integer an INTEGER column cannot hold is None.
    Otherwise PostgreSQL refuses the row, and a job whose Tableau job id does not fit
    crashes at every lease, forever.
    """
    columns = model.__table__.columns
    fitted = dict(values)
    for key, value in values.items():
        kind = columns[key].type if key in columns else None
        if isinstance(value, str) and isinstance(kind, String):
            limit = kind.length or MAX_TEXT
            value = storable(value)
            fitted[key] = value if len(value) <= limit else value[: limit - 1] + "\u2026"
        elif isinstance(value, int) and type(kind) is Integer and value not in _INT32:
            fitted[key] = None
    return fitted


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {datetime: UTCDateTime()}


class Event(Base):
    """One received, signed webhook body: a dbt event, or an invalid body."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    event_type: Mapped[str | None] = mapped_column(String(64))
    account_id: Mapped[str | None] = mapped_column(String(64))
    project_id: Mapped[str | None] = mapped_column(String(64))
    environment_id: Mapped[str | None] = mapped_column(String(64))
    job_id: Mapped[str | None] = mapped_column(String(64))
    run_id: Mapped[str | None] = mapped_column(String(64), index=True)
    run_status_code: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime]
    refreshes: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))

    jobs: Mapped[list[RefreshJob]] = relationship(
        secondary="refresh_job_events",
        back_populates="events",
        viewonly=True,
        order_by="RefreshJob.id",
    )


class RefreshJob(Base):
    """One refresh of one Tableau item; queued jobs of one item coalesce."""

    __tablename__ = "refresh_jobs"
    __table_args__ = (
        # At most one not-yet-sent job per item: new events join it (coalescing).
        Index(
            "uq_refresh_jobs_queued_target",
            "target_key",
            unique=True,
            sqlite_where=text(QUEUED_ONLY),
            postgresql_where=text(QUEUED_ONLY),
        ),
        Index("ix_refresh_jobs_state_not_before", "state", "not_before"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    target_kind: Mapped[str] = mapped_column(String(16))
    target_by: Mapped[str] = mapped_column(String(8))
    target_ref: Mapped[str] = mapped_column(String(512))
    target_key: Mapped[str] = mapped_column(String(600))
    rule_name: Mapped[str] = mapped_column(String(255))
    incremental: Mapped[bool] = mapped_column(Boolean)
    wait: Mapped[bool] = mapped_column(Boolean)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    not_before: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    item_luid: Mapped[str | None] = mapped_column(String(64))
    tableau_job_id: Mapped[str | None] = mapped_column(String(64))
    sent_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    finish_code: Mapped[int | None] = mapped_column(Integer)
    error_code: Mapped[str | None] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # received_at of the newest event that joined: a refresh started before it is stale.
    last_event_at: Mapped[datetime]
    # A failed or dead job that was replayed: the job that took its events over.
    replayed_as: Mapped[int | None] = mapped_column(BigId, ForeignKey("refresh_jobs.id"))
    # A lineage-made job: the decision behind it (JSON, `lineage.explain.to_json`).
    explanation: Mapped[str | None] = mapped_column(Text)

    events: Mapped[list[Event]] = relationship(
        secondary="refresh_job_events", back_populates="jobs", viewonly=True, order_by=Event.id
    )
    attempt_log: Mapped[list[Attempt]] = relationship(
        back_populates="job", order_by="Attempt.number", viewonly=True
    )


class RefreshJobEvent(Base):
    """Which events a refresh job serves."""

    __tablename__ = "refresh_job_events"

    refresh_job_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("refresh_jobs.id"), primary_key=True
    )
    # Looked up from the event side ("which jobs did this event cause?").
    event_pk: Mapped[int] = mapped_column(
        BigId, ForeignKey("events.id"), primary_key=True, index=True
    )


class Attempt(Base):
    """One try at sending (and following) a refresh job to Tableau."""

    __tablename__ = "attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    refresh_job_id: Mapped[int] = mapped_column(BigId, ForeignKey("refresh_jobs.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str] = mapped_column(String(16))
    tableau_job_id: Mapped[str | None] = mapped_column(String(64))
    finish_code: Mapped[int | None] = mapped_column(Integer)
    error_code: Mapped[str | None] = mapped_column(String(16))
    message: Mapped[str | None] = mapped_column(Text)

    job: Mapped[RefreshJob] = relationship(back_populates="attempt_log", viewonly=True)


def create_store_engine(database_url: str) -> Engine:
    """An engine with the relay's durability settings for the URL's backend."""
    try:
        url = make_url(database_url)
    except ArgumentError:
        # Not echoed: the URL may hold a password.
        raise ConfigError("database_url is not a database URL") from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"database_url: use sqlite:/// or postgresql+psycopg://, not {url.drivername}"
        )
    if url.get_backend_name() == "postgresql":
        try:
            return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
        except (ImportError, ArgumentError):
            raise ConfigError(
                f"database_url: the driver of {url.drivername} is not installed"
                " (postgresql+psycopg:// needs psycopg)"
            ) from None
    if url.database in (None, "", ":memory:"):
        # One shared connection, or every thread would see its own empty database.
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        engine = create_engine(url)
    _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from the driver so `begin` below decides.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        # Takes effect only in a database without tables: new ones return the
        # pages retention frees to the disk (retention.py); older ones reuse them.
        cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        readonly = conn.get_execution_options().get(_READONLY, False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (Alembic, no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("path_separator", "os")
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Replicas starting together: one migrates, the others wait and find it done.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


class Store:
    """Owns the engine; hands out sessions; answers the admin API's questions."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url
        self.engine = create_store_engine(database_url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(
            self.engine.execution_options(**{_READONLY: True}), expire_on_commit=False
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> None:
        """Bring the schema up to date; a DatabaseError (one line, no password) if it cannot."""
        with translated(self.url):
            migrate(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        factory = self._read_sessions if readonly else self._sessions
        with factory() as session, session.begin():
            yield session

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A Core connection in one write transaction (the recorder's hot path)."""
        with self.engine.begin() as conn:
            yield conn

    def ping(self) -> None:
        """Raise (a DatabaseError) if the database does not answer."""
        with translated(self.url), self.session(readonly=True) as session:
            session.execute(text("SELECT 1"))

    def list_events(self, limit: int = 50, offset: int = 0) -> list[Event]:
        """Newest first."""
        query = select(Event).order_by(Event.id.desc()).limit(limit).offset(offset)
        with self.session(readonly=True) as session:
            return list(session.scalars(query))

    def get_event(self, pk: int) -> Event | None:
        """One event with `jobs` loaded."""
        query = select(Event).where(Event.id == pk).options(selectinload(Event.jobs))
        with self.session(readonly=True) as session:
            return session.scalars(query).one_or_none()

    def list_jobs(self, state: str | None = None, limit: int = 50) -> list[RefreshJob]:
        """Newest first, optionally of one state."""
        query = select(RefreshJob).order_by(RefreshJob.id.desc()).limit(limit)
        if state is not None:
            query = query.where(RefreshJob.state == state)
        with self.session(readonly=True) as session:
            return list(session.scalars(query))

    def get_job(self, pk: int) -> RefreshJob | None:
        """One job with `attempt_log` and `events` loaded."""
        query = (
            select(RefreshJob)
            .where(RefreshJob.id == pk)
            .options(selectinload(RefreshJob.attempt_log), selectinload(RefreshJob.events))
        )
        with self.session(readonly=True) as session:
            return session.scalars(query).one_or_none()

    def run_story(self, run_id: str) -> tuple[list[Event], list[RefreshJob]]:
        """A dbt run's events and the refresh jobs that serve them, oldest first."""
        events = select(Event).where(Event.run_id == run_id).order_by(Event.id)
        served = select(RefreshJobEvent.refresh_job_id).join(
            Event, Event.id == RefreshJobEvent.event_pk
        )
        jobs = (
            select(RefreshJob)
            .where(RefreshJob.id.in_(served.where(Event.run_id == run_id)))
            .order_by(RefreshJob.id)
        )
        with self.session(readonly=True) as session:
            return list(session.scalars(events)), list(session.scalars(jobs))

    def counts_by_state(self) -> dict[str, int]:
        """Refresh jobs per state, every known state present (0 if none)."""
        query = select(RefreshJob.state, func.count()).group_by(RefreshJob.state)
        with self.session(readonly=True) as session:
            found = dict(session.execute(query).all())
        return {state: found.get(state, 0) for state in JOB_STATES} | found

    def counts_by_outcome(self) -> dict[str, int]:
        """Events per outcome, every known outcome present (0 if none)."""
        query = select(Event.outcome, func.count()).group_by(Event.outcome)
        with self.session(readonly=True) as session:
            found = dict(session.execute(query).all())
        return {outcome: found.get(outcome, 0) for outcome in EVENT_OUTCOMES} | found


def check_database(database_url: str) -> str:
    """For `check`: how the database answered, creating nothing; DatabaseError if it did not."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(url.database)
        if not path.exists():
            if not path.parent.is_dir():
                raise DatabaseError(
                    f"database {hide_password(database_url)}: the directory {path.parent}"
                    " does not exist; check database_url"
                )
            return f"{path} does not exist yet: serve and worker create it"
    store = Store(database_url)
    try:
        store.ping()
    finally:
        store.dispose()
    return f"{store.dialect} answers"


# --- bulk writes of the recorder's group commit ---------------------------------


def queued_job_row(
    *,
    kind: str,
    by: str,
    ref: str,
    key: str,
    rule_name: str,
    incremental: bool,
    wait: bool,
    last_event_at: datetime,
    now: datetime,
    explanation: str | None = None,
) -> dict[str, Any]:
    """The row `queued_job_upsert` inserts, or merges into the item's queued job."""
    return {
        "target_kind": kind,
        "target_by": by,
        "target_ref": ref,
        "target_key": key,
        "rule_name": rule_name,
        "incremental": incremental,
        "wait": wait,
        "state": JobState.QUEUED,
        "attempts": 0,
        "not_before": now,
        "created_at": now,
        "updated_at": now,
        "last_event_at": last_event_at,
        "explanation": explanation,
    }


@functools.cache
def queued_job_upsert(dialect: str) -> Any:
    """Join the queued job of `target_key`, or create it; RETURNING id, target_key.

    On a join the job waits if any event asks it to, is incremental only if all
    do, and keeps the newest event time: `rules.join` in SQL, held to the same
    answers by tests/integration/test_merge_rule.py. Built once per dialect
    (building it costs more than running it).
    """
    jobs = Base.metadata.tables[RefreshJob.__tablename__]
    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(jobs)
    ex = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=["target_key"],
        index_where=text(QUEUED_ONLY),  # names the partial index
        set_={
            "wait": jobs.c.wait | ex.wait,
            "incremental": jobs.c.incremental & ex.incremental,
            "last_event_at": case(
                (ex.last_event_at > jobs.c.last_event_at, ex.last_event_at),
                else_=jobs.c.last_event_at,
            ),
            "updated_at": ex.updated_at,
            # A lineage decision joining the job is the newest reason for it.
            "explanation": func.coalesce(ex.explanation, jobs.c.explanation),
        },
    ).returning(jobs.c.id, jobs.c.target_key)


_PG_INSERT_LINKS: Final = text(
    "INSERT INTO refresh_job_events (refresh_job_id, event_pk)"
    " SELECT CAST(r->>0 AS bigint), CAST(r->>1 AS bigint)"
    " FROM json_array_elements(CAST(:rows AS json)) AS r"
)


def insert_links(conn: Connection, links: Sequence[tuple[int, int]]) -> None:
    """(refresh_job_id, event_pk) rows in one statement, without per-row Python work."""
    if conn.dialect.name == "postgresql":
        conn.execute(_PG_INSERT_LINKS, {"rows": json.dumps(links)})
        return
    sql = "INSERT INTO refresh_job_events (refresh_job_id, event_pk) VALUES "
    values = tuple(itertools.chain.from_iterable(links))
    conn.exec_driver_sql(sql + ", ".join(["(?, ?)"] * len(links)), values)
