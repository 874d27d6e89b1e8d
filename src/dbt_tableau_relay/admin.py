"""The JSON admin API under `/api`, and the access rule it shares with the dashboard.

Access to both (`AdminAccess`, one dependency on each router):

- `admin_token` set: every request needs `Authorization: Bearer <token>`, or
  HTTP Basic with the token as the password (any user name), so that a
  browser can open the dashboard. Compared in constant time; 401 otherwise.
- no token, listening on loopback only (127.0.0.1, ::1, localhost): open to
  requests made on this machine, and only those: a request that came through a
  proxy (`Forwarded`, `X-Forwarded-*`, `X-Real-IP` or `Via`), from a peer that
  is not loopback, or naming another host in `Host` (DNS rebinding from a web
  page) gets 403. A reverse proxy on the same machine connects from 127.0.0.1
  and, as nginx does by default, may send `Host: 127.0.0.1:PORT`: only its
  headers tell its requests from local ones, so any of them is refused.
- no token, listening on anything else: 403, saying to set `admin_token`.

A state-changing request (the replay POSTs) that a browser marks as sent from
another site is refused (403) whatever the credentials: a browser sends
cached Basic credentials with a cross-site form post too.

The API answers what the store holds; it never returns a secret (settings,
tokens). Event bodies are dbt's payloads and are shown as received.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from starlette.datastructures import Headers

from dbt_tableau_relay import reads
from dbt_tableau_relay.config import Settings
from dbt_tableau_relay.errors import NotReplayableError, UnknownJobError
from dbt_tableau_relay.queue import RefreshQueue
from dbt_tableau_relay.runs import LineageJob, lineage_jobs_of_run
from dbt_tableau_relay.states import JobState
from dbt_tableau_relay.store import RefreshJob, Store

REALM: Final = "dbt-tableau-relay"
LOOPBACK_NAMES: Final = ("localhost",)
SAFE_METHODS: Final = ("GET", "HEAD", "OPTIONS")
# Headers a proxy adds (RFC 7239, the de facto X-Forwarded-* family, nginx, RFC 9110).
PROXY_HEADERS: Final = ("forwarded", "x-real-ip", "via")
PROXY_PREFIX: Final = "x-forwarded-"

# -- access --------------------------------------------------------------------


@dataclass(frozen=True)
class Denied:
    status: Literal[401, 403]
    reason: str


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: a name only this machine can connect to."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def presented_secret(authorization: str | None) -> bytes | None:
    """The token of `Bearer <token>`, or the password of `Basic base64(user:password)`."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value.encode()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True)
        except binascii.Error:
            return None
        return decoded.partition(b":")[2]
    return None


def proxy_header(names: Iterable[str]) -> str | None:
    """The first of these header names that shows a proxy passed the request on, or None."""
    for name in names:
        lowered = name.lower()
        if lowered in PROXY_HEADERS or lowered.startswith(PROXY_PREFIX):
            return lowered
    return None


def proxy_evidence(names: Iterable[str], http_version: str) -> str | None:
    """What shows that a proxy passed the request on, in words; None if nothing does.

    HTTP/1.0 counts: nginx's bare `proxy_pass` adds no header at all, but speaks
    HTTP/1.0 to its upstream unless told otherwise; browsers and curl send 1.1 or 2.
    """
    if header := proxy_header(names):
        return f"it has a {header} header"
    if http_version == "1.0":
        return "it was sent with HTTP/1.0, as nginx's proxy_pass does by default"
    return None


def access_denied(
    token: SecretStr | None,
    listen: str,
    authorization: str | None,
    host: str | None,
    *,
    peer: str | None,
    proxied_by: str | None = None,
) -> Denied | None:
    """Who may see the dashboard and the API: None to serve, or why not.

    `peer` is the connection's address (None when unknown); `proxied_by` says
    what shows that a proxy passed the request on (`proxy_evidence`), if anything.
    """
    expected = token.get_secret_value().encode() if token else b""
    if expected:
        given = presented_secret(authorization)
        if given is not None and hmac.compare_digest(given, expected):
            return None
        return Denied(401, "the admin token is required: send Authorization: Bearer <admin_token>")
    if not is_loopback(listen.rpartition(":")[0]):
        return Denied(
            403,
            f"the dashboard and admin API are off: the relay listens on {listen}, which other"
            " machines can reach, and no admin_token is set. Set admin_token in relay.yml"
            " (e.g. from an environment variable) or listen on 127.0.0.1.",
        )
    if proxied_by is not None:
        return Denied(
            403,
            f"without an admin_token the dashboard and admin API answer only requests made on"
            f" this machine, and this one came through a proxy ({proxied_by}):"
            " set admin_token in relay.yml to reach them through a proxy",
        )
    if peer is None or not is_loopback(peer):
        return Denied(
            403,
            f"without an admin_token the dashboard and admin API answer only connections from"
            f" this machine, not from {peer or 'an unknown address'}: set admin_token in"
            " relay.yml to reach them from elsewhere",
        )
    if not is_loopback(urlsplit(f"//{host or ''}").hostname or ""):
        return Denied(
            403,
            "without an admin_token the dashboard and admin API answer only requests for a"
            " loopback host (127.0.0.1, localhost): set admin_token to reach them otherwise",
        )
    return None


def cross_site(method: str, headers: Headers) -> bool:
    """A state-changing request that a browser says came from another site."""
    if method in SAFE_METHODS:
        return False
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = headers.get("origin")
    if origin is None:
        return False  # not sent by a browser: curl, scripts
    return urlsplit(origin).netloc.lower() != headers.get("host", "").lower()


class AdminAccess:
    """The dependency guarding the dashboard and the API; `challenge` names the 401's scheme."""

    def __init__(self, challenge: Literal["Bearer", "Basic"]) -> None:
        self.challenge = f'{challenge} realm="{REALM}"'

    async def __call__(self, request: Request) -> None:
        settings: Settings = request.app.state.settings
        headers = request.headers
        denied = access_denied(
            settings.admin_token,
            settings.listen,
            headers.get("authorization"),
            headers.get("host"),
            peer=request.client.host if request.client else None,
            proxied_by=proxy_evidence(headers.keys(), request.scope.get("http_version", "1.1")),
        )
        if denied is None and cross_site(request.method, headers):
            denied = Denied(403, "a cross-site request may not change anything here")
        if denied is not None:
            challenge = {"WWW-Authenticate": self.challenge} if denied.status == 401 else None
            raise HTTPException(denied.status, denied.reason, headers=challenge)


# -- answers -------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Problem(BaseModel):
    detail: str


class Summary(BaseModel):
    events: dict[str, int]
    jobs: dict[str, int]


class EventSummary(_Out):
    id: int
    event_id: str | None
    event_type: str | None
    account_id: str | None
    project_id: str | None
    environment_id: str | None
    job_id: str | None
    run_id: str | None
    run_status_code: int | None
    outcome: str
    detail: str | None
    received_at: datetime
    refreshes: int


class AttemptOut(_Out):
    number: int
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    tableau_job_id: str | None
    finish_code: int | None
    error_code: str | None
    message: str | None


class JobSummary(_Out):
    id: int
    rule_name: str
    target_kind: str
    target_by: str
    target_ref: str
    state: JobState  # the schema lists every state
    incremental: bool
    wait: bool
    attempts: int
    item_luid: str | None
    tableau_job_id: str | None
    finish_code: int | None
    error_code: str | None
    error: str | None
    claimed_by: str | None
    created_at: datetime
    updated_at: datetime
    not_before: datetime
    last_event_at: datetime
    sent_at: datetime | None
    finished_at: datetime | None
    replayed_as: int | None = None  # the job its latest replay handed its events to


class JobDetail(JobSummary):
    attempt_log: list[AttemptOut]
    events: list[EventSummary]
    # A lineage-made job: the decision that made it (refresh, the item, the dbt nodes).
    explanation: dict[str, Any] | None = None


class EventDetail(EventSummary):
    body: str
    jobs: list[JobSummary]


class LineageOut(_Out):
    id: int
    rule_name: str
    sources: str
    state: str
    attempts: int
    error: str | None
    created_at: datetime
    finished_at: datetime | None
    decisions: list[dict[str, Any]] = Field(default_factory=list)


class RunStory(BaseModel):
    """A dbt run: its events, what its lineage rules decided, the refreshes it caused."""

    run_id: str
    events: list[EventSummary]
    lineage: list[LineageOut]
    jobs: list[JobSummary]


class Replayed(BaseModel):
    job_id: int
    replayed_as: int


# -- routes --------------------------------------------------------------------

router = APIRouter(prefix="/api", tags=["admin"], dependencies=[Depends(AdminAccess("Bearer"))])
NOT_FOUND: Final[dict[int | str, dict[str, Any]]] = {
    404: {"model": Problem, "description": "No such event or job"}
}
MAX_ID: Final = 2**63 - 1  # BIGINT: a larger id is no id, not a database error
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=MAX_ID)]
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
RuleQuery = Annotated[str | None, Query(max_length=255, description="a rule's name, exactly")]
TargetQuery = Annotated[
    str | None, Query(max_length=600, description="one item: its path or LUID, exactly")
]
ItemQuery = Annotated[
    str | None,
    Query(max_length=600, description="a part of the item's path or LUID (or its decision's path)"),
]
DbtJobQuery = Annotated[str | None, Query(max_length=64, description="a dbt Cloud job id")]


def store_of(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def replay_job(request: Request, job_id: int, by: str) -> int:
    """Replay in the app's store, and wake its worker (if it runs one) to send it now."""
    new_id = RefreshQueue(store_of(request), by).replay(job_id)
    worker = getattr(request.app.state, "worker", None)
    if worker is not None:
        worker.wake()
    return new_id


def job_summaries(jobs: list[RefreshJob]) -> list[JobSummary]:
    return [JobSummary.model_validate(j) for j in jobs]


@router.get("/summary")
def summary(request: Request) -> Summary:
    """Events by outcome and refresh jobs by state, every known one present."""
    store = store_of(request)
    return Summary(events=store.counts_by_outcome(), jobs=store.counts_by_state())


@router.get("/events")
def list_events(
    request: Request,
    job_id: DbtJobQuery = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> list[EventSummary]:
    """Received events, newest first, optionally of one dbt job."""
    page = reads.events(store_of(request), job_id=job_id, limit=limit, offset=offset)
    return [EventSummary.model_validate(e) for e in page.rows]


@router.get("/events/{event_pk}", responses=NOT_FOUND)
def get_event(request: Request, event_pk: Id) -> EventDetail:
    """One event with its body and the refresh jobs that serve it."""
    store = store_of(request)
    event = store.get_event(event_pk)
    if event is None:
        raise HTTPException(404, f"event {event_pk} does not exist")
    summary = EventSummary.model_validate(event)
    return EventDetail(**summary.model_dump(), body=event.body, jobs=job_summaries(event.jobs))


@router.get("/jobs")
def list_jobs(
    request: Request,
    state: JobState | None = None,  # unknown: a 422 that lists the valid ones
    rule: RuleQuery = None,
    target: TargetQuery = None,
    item: ItemQuery = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> list[JobSummary]:
    """Refresh jobs, newest first; each filter given must hold."""
    where = reads.JobFilter(state, rule, target, item)
    return job_summaries(reads.jobs(store_of(request), where, limit=limit, offset=offset).rows)


@router.get("/jobs/{job_id}", responses=NOT_FOUND)
def get_job(request: Request, job_id: Id) -> JobDetail:
    """One refresh job with every attempt and the events it serves."""
    store = store_of(request)
    job = store.get_job(job_id)
    if job is None:
        raise HTTPException(404, f"refresh job {job_id} does not exist")
    [summary] = job_summaries([job])
    return JobDetail(
        **summary.model_dump(),
        attempt_log=[AttemptOut.model_validate(a) for a in job.attempt_log],
        events=[EventSummary.model_validate(e) for e in job.events],
        explanation=json.loads(job.explanation) if job.explanation else None,
    )


@router.get("/runs/{run_id}", responses=NOT_FOUND)
def get_run(request: Request, run_id: Annotated[str, Path(max_length=64)]) -> RunStory:
    """One dbt run: its events, each lineage decision (refresh or skip, and why), its refreshes."""
    store = store_of(request)
    events, jobs = store.run_story(run_id)
    lineage = lineage_jobs_of_run(store, run_id)
    if not events:
        raise HTTPException(404, f"no event of dbt run {run_id} was received")
    return RunStory(
        run_id=run_id,
        events=[EventSummary.model_validate(e) for e in events],
        lineage=[_lineage_out(j) for j in lineage],
        jobs=job_summaries(jobs),
    )


def _lineage_out(job: LineageJob) -> LineageOut:
    out = LineageOut.model_validate(job)
    return out.model_copy(update={"decisions": json.loads(job.explanation or "[]")})


@router.post(
    "/jobs/{job_id}/replay",
    status_code=202,
    responses={**NOT_FOUND, 409: {"model": Problem, "description": "Not failed or dead"}},
)
def replay(request: Request, job_id: Id) -> Replayed:
    """Refresh a failed or dead job's item again for its events.

    `replayed_as` is the queued job that will: a new one, or the item's queued
    job, which the events join. The old job keeps its state and history.
    """
    try:
        new_id = replay_job(request, job_id, by="api")
    except UnknownJobError as exc:
        raise HTTPException(404, str(exc)) from None
    except NotReplayableError as exc:
        raise HTTPException(409, str(exc)) from None
    return Replayed(job_id=job_id, replayed_as=new_id)
