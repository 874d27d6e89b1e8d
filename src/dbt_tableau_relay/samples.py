"""Sample dbt Cloud webhook deliveries: dbt's documented shape, signed as dbt signs.

Used by `send-test`, `demo`, the tests and the benchmarks: a body is built
fresh (new eventId, current timestamp with nine fractional digits), and the
signature is the lowercase hex HMAC-SHA256 of the exact bytes posted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import string
from datetime import UTC, datetime
from typing import Literal

import requests

EventKind = Literal["completed", "started", "errored"]

_STATUS = {
    "started": ("Running", 3),
    "completed": ("Success", 10),
    "errored": ("Errored", 20),
}


def new_event_id() -> str:
    """An id in dbt's style: `wev_` and 27 base-62 characters."""
    alphabet = string.ascii_letters + string.digits
    return "wev_" + "".join(secrets.choice(alphabet) for _ in range(27))


def dbt_timestamp(when: datetime | None = None) -> str:
    """dbt's format: nine fractional digits and a Z."""
    when = (when or datetime.now(UTC)).astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond:06d}" + "000Z"


def sample_event(
    kind: EventKind = "completed",
    *,
    job_id: int | str = 123,
    run_id: int | str | None = None,
    account_id: int = 1,
    environment_id: int | str = 1234,
    project_id: int | str = 167194,
    run_status_code: int | None = None,
    event_id: str | None = None,
) -> bytes:
    """A `job.run.<kind>` body; `run_status_code` overrides the kind's (20: a failed run).

    Without a `run_id`, each sample is a run of its own: events of one run ask
    for its refreshes once (see runs.py).
    """
    status, code = _STATUS[kind]
    if run_status_code is not None:
        code = run_status_code
        status = {10: "Success", 20: "Error", 30: "Cancelled"}.get(code, status)
    now = dbt_timestamp()
    data: dict[str, object] = {
        "jobId": str(job_id),
        "jobName": f"Job {job_id} (dbt build)",
        "runId": str(run_id if run_id is not None else new_run_id()),
        "environmentId": str(environment_id),
        "environmentName": "Production",
        "dbtVersion": "1.9.0",
        "projectName": "Analytics",
        "projectId": str(project_id),
        "runStatus": status,
        "runStatusCode": code,
        "runStatusMessage": "None",
        "runReason": "Kicked off by dbt-tableau-relay send-test",
        "runStartedAt": now[:19] + "Z",
    }
    if kind == "completed":
        data["runFinishedAt"] = now[:19] + "Z"
    elif kind == "errored":
        data["runErroredAt"] = now[:19] + "Z"
    body = {
        "accountId": account_id,
        "webhookId": "wsu_relaysample",
        "eventId": event_id or new_event_id(),
        "timestamp": now,
        "eventType": f"job.run.{kind}",
        "webhookName": "dbt-tableau-relay sample",
        "data": data,
    }
    return json.dumps(body).encode()


def new_run_id() -> int:
    """A run id no other sample uses (dbt's are positive integers)."""
    return secrets.randbelow(10**12) + 10**6


def signature(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signed_headers(body: bytes, secret: str) -> dict[str, str]:
    """The headers dbt Cloud sends with a delivery."""
    return {"Authorization": signature(body, secret), "Content-Type": "application/json"}


def post_event(url: str, body: bytes, secret: str, timeout: float = 10.0) -> requests.Response:
    """Deliver a body as dbt Cloud would, with its signature."""
    return requests.post(url, data=body, headers=signed_headers(body, secret), timeout=timeout)
