"""Which dbt Cloud answers are worth retrying, and how long to wait: pure decisions.

`error_for` turns one failed Admin API answer into the project's exception
for it (429, 408 and 5xx are transient; any other 4xx is permanent), keeping
dbt's own `user_message` and never the body or a header. `Backoff` spaces the
retries of one call with full jitter under a doubling ceiling.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from dbt_tableau_relay.errors import DbtCloudError, PermanentDbtCloudError, TransientDbtCloudError
from dbt_tableau_relay.tableau_errors import parse_retry_after

_HINTS = {
    401: "; check dbt.cloud.api_token, and that access_url is your account's access URL",
    403: "; the token may not read this account's runs (a service token with Job Viewer or more)",
}


@dataclass(frozen=True)
class Backoff:
    """How long to wait after failed attempt number `attempt` of one API call.

    The worker's RetryPolicy decides for queued refresh jobs across restarts
    (dead letters, Tableau's 409093); this one spaces a few tries inside one call.
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0

    def ceiling(self, attempt: int) -> float:
        return min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))

    def delay(
        self, error: DbtCloudError, attempt: int, rng: random.Random | None = None
    ) -> float | None:
        """Seconds to wait before the next try, or None: give up and raise `error`.

        Never sooner than Retry-After; a Retry-After longer than `max_delay` is
        not slept through here: the error (with its `retry_after`) goes to the
        caller, whose job can be retried later without holding a thread.
        """
        if not isinstance(error, TransientDbtCloudError) or attempt >= self.max_attempts:
            return None
        if error.retry_after is not None and error.retry_after > self.max_delay:
            return None
        jittered = float((rng or random).uniform(0.0, self.ceiling(attempt)))
        return max(jittered, error.retry_after or 0.0)


def error_for(status: int, body: bytes, what: str, retry_after: str | None = None) -> DbtCloudError:
    """The error for a non-2xx answer to `what` (e.g. "GET runs/5/")."""
    said = user_message(body)
    text = f"{what}: dbt Cloud answered {status}" + (f" ({said})" if said else "")
    if status in (408, 429) or status >= 500:
        return TransientDbtCloudError(
            text, status=status, retry_after=parse_retry_after(retry_after)
        )
    return PermanentDbtCloudError(text + _HINTS.get(status, ""), status=status)


def user_message(body: bytes) -> str:
    """dbt's `status.user_message` when the body is its envelope; short; else nothing."""
    try:
        message = json.loads(body)["status"]["user_message"]
    except (ValueError, KeyError, TypeError):
        return ""
    return str(message)[:200] if message else ""
