"""`jobs`, `events` and `explain`: what the relay holds, for a terminal (or `--json`).

Thin commands on the read side (`reads.py`), on the configured database
directly: no server needs to run. Registered on the group in `cli.py`; they
take its helpers at call time, so that the two modules import each other
only once both are loaded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Final

import click

if TYPE_CHECKING:
    from dbt_tableau_relay.store import Event, RefreshJob, Store

ERROR_SHOWN: Final = 60  # characters of an error in a table; --json has all of it
# reads.MAX_LIMIT, and the states checked in the command: importing the store (SQLAlchemy,
# Alembic) at start would double the start-up time of every other command.
LIMIT = click.IntRange(1, 500)


@contextmanager
def stored(ctx: click.Context) -> Iterator[Store]:
    """The configured database, migrated, for the length of one command."""
    from sqlalchemy.exc import SQLAlchemyError

    from dbt_tableau_relay.cli import fail, reported_errors, settings_of
    from dbt_tableau_relay.store import Store

    settings = settings_of(ctx)
    with reported_errors():
        store = Store(settings.database_url)
        try:
            store.migrate()
            yield store
        except SQLAlchemyError as exc:  # not the URL: it may hold a password
            fail(f"cannot read the database: {getattr(exc, 'orig', None) or exc}")
        finally:
            store.dispose()


@click.command()
@click.option("--state", metavar="S", help="Only jobs in this state (queued, failed, dead...).")
@click.option("--rule", metavar="NAME", help="Only jobs of this rule.")
@click.option("--limit", type=LIMIT, default=50, show_default=True, help="The newest N.")
@click.option("--json", "as_json", is_flag=True, help="As JSON, as GET /api/jobs answers.")
@click.pass_context
def jobs(
    ctx: click.Context, state: str | None, rule: str | None, limit: int, as_json: bool
) -> None:
    """Refresh jobs, newest first: state, item, attempts, Tableau's verdict."""
    from dbt_tableau_relay import reads
    from dbt_tableau_relay.states import JOB_STATES

    if state is not None and state not in JOB_STATES:
        known = ", ".join(JOB_STATES)
        raise click.BadParameter(f"{state!r} is not one of {known}", param_hint="--state")
    with stored(ctx) as store:
        rows = reads.jobs(store, reads.JobFilter(state=state, rule=rule), limit=limit).rows
        runs = reads.runs_of_jobs(store, [j.id for j in rows])
    if as_json:
        from dbt_tableau_relay.admin import JobSummary

        click.echo(dump([JobSummary.model_validate(j).model_dump(mode="json") for j in rows]))
    elif not rows:
        click.echo("no refresh job" + (" matches" if state or rule else " yet"))
    else:
        click.echo("\n".join(table(JOB_COLUMNS, [job_row(j, runs.get(j.id, [])) for j in rows])))


@click.command()
@click.option("--job-id", metavar="J", help="Only events of this dbt Cloud job.")
@click.option("--limit", type=LIMIT, default=50, show_default=True, help="The newest N.")
@click.option("--json", "as_json", is_flag=True, help="As JSON, as GET /api/events answers.")
@click.pass_context
def events(ctx: click.Context, job_id: str | None, limit: int, as_json: bool) -> None:
    """Received dbt Cloud events, newest first: type, dbt job and run, outcome."""
    from dbt_tableau_relay import reads

    with stored(ctx) as store:
        rows = reads.events(store, job_id=job_id, limit=limit).rows
    if as_json:
        from dbt_tableau_relay.admin import EventSummary

        click.echo(dump([EventSummary.model_validate(e).model_dump(mode="json") for e in rows]))
    elif not rows:
        click.echo("no event" + (f" of dbt job {job_id}" if job_id else " yet"))
    else:
        click.echo("\n".join(table(EVENT_COLUMNS, [event_row(e) for e in rows])))


# -- tables ----------------------------------------------------------------------

JOB_COLUMNS: Final = (
    "ID",
    "STATE",
    "RULE",
    "KIND",
    "ITEM",
    "ATTEMPTS",
    "CODE",
    "FINISHED",
    "RUNS",
    "ERROR",
)
EVENT_COLUMNS: Final = (
    "ID",
    "EVENT_ID",
    "TYPE",
    "DBT_JOB",
    "RUN",
    "OUTCOME",
    "RECEIVED",
    "REFRESHES",
)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns two spaces apart; no trailing blanks."""
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]


def job_row(job: RefreshJob, runs: Sequence[str]) -> list[str]:
    from dbt_tableau_relay.reads import item_path

    code = job.error_code or ("" if job.finish_code is None else f"finishCode {job.finish_code}")
    return [
        str(job.id),
        job.state,
        job.rule_name,
        job.target_kind,
        item_path(job),
        str(job.attempts),
        code,
        utc(job.finished_at),
        ",".join(runs),
        one_line(job.error or "", ERROR_SHOWN),
    ]


def event_row(event: Event) -> list[str]:
    return [
        str(event.id),
        event.event_id or "",
        event.event_type or "",
        event.job_id or "",
        event.run_id or "",
        event.outcome,
        utc(event.received_at),
        str(event.refreshes),
    ]


def utc(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def one_line(text: str, width: int) -> str:
    """Whitespace (newlines too) collapsed, cut to `width` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def dump(rows: list[dict[str, object]]) -> str:
    return json.dumps(rows, indent=2, ensure_ascii=False)


@click.command()
@click.option("--run", "run_id", required=True, help="The dbt Cloud run id.")
@click.option("--json", "as_json", is_flag=True, help="The decisions as JSON.")
@click.pass_context
def explain(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """Refresh or skip, for each Tableau item a lineage rule considers for a dbt run, and why.

    What the worker decided, from the configured database; for a run it has
    not processed, decided now from the dbt Cloud and Tableau APIs.
    """
    from dbt_tableau_relay.cli import reported_errors, settings_of
    from dbt_tableau_relay.lineage.explain import explain_lines, to_json
    from dbt_tableau_relay.lineage_run import live_decisions, stored_decisions

    with stored(ctx) as store:
        decisions = stored_decisions(store, run_id)
    if decisions is None:
        with reported_errors():
            decisions = live_decisions(settings_of(ctx), run_id)
    if as_json:
        click.echo(json.dumps({"run_id": run_id, "decisions": to_json(decisions)}, indent=2))
    else:
        click.echo(
            "\n".join(explain_lines(decisions)) or f"no Tableau item considered for run {run_id}"
        )
