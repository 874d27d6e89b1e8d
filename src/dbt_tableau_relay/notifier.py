"""The notifier: a thread that delivers the outbox (notifications.py) to Slack, Teams, webhooks.

It runs beside the worker (service.py), never on the webhook's path: a slow
or broken receiver delays nothing but its own messages. Each pass claims a
few due notifications under a lease, renders each from the store
(messages.py) and POSTs it. What an answer means is `decide`, a pure
function: 2xx is sent; 5xx, 408, 429 and network errors are tried again
later, backed off exponentially with full jitter (`RetryPolicy.backoff`, never
sooner than a Retry-After), until `max_attempts`; any other answer (a 404 from
a deleted Slack webhook, a 400 for a refused body) will not change, so the
message fails at once.

Channel URLs are secrets: they are never logged, and an error that quotes
one is stored and logged with the URL cut out (`scrub`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

import httpx

from dbt_tableau_relay import __version__
from dbt_tableau_relay.config import NotifyChannel, Settings
from dbt_tableau_relay.messages import JobStory, render
from dbt_tableau_relay.metrics import NOTIFICATIONS
from dbt_tableau_relay.notifications import ClaimedNotification, Outbox, load_story
from dbt_tableau_relay.retry import RetryPolicy
from dbt_tableau_relay.store import Store
from dbt_tableau_relay.tableau_errors import parse_retry_after

log = logging.getLogger(__name__)

# About a day of tries (the delays' ceilings: 5 s, 10 s, ... then 30 min each): long
# enough to ride out a receiver's outage, short enough that a message still means something.
POLICY: Final = RetryPolicy(max_attempts=24, base_delay=5.0, max_delay=1800.0)
POLL_INTERVAL: Final = 2.0  # seconds between looks for due notifications when idle
TIMEOUT: Final = 10.0  # seconds for one POST
BATCH: Final = 10
ERROR_CHARS: Final = 300  # of a receiver's answer kept as the last error
RETRIED_STATUSES: Final = frozenset({408, 429})

Outcome = Literal["sent", "retry", "failed"]


@dataclass(frozen=True)
class Delivery:
    """How one POST went: the status (None: no answer), its Retry-After, what went wrong."""

    status: int | None
    retry_after: float | None = None
    error: str | None = None


def decide(delivery: Delivery, attempts: int, policy: RetryPolicy) -> tuple[Outcome, float]:
    """What to do after try number `attempts`: sent, retry after a delay, or give up."""
    status = delivery.status
    if status is not None and 200 <= status < 300:
        return "sent", 0.0
    transient = status is None or status >= 500 or status in RETRIED_STATUSES
    if not transient or attempts >= policy.max_attempts:
        return "failed", 0.0
    return "retry", policy.backoff(attempts, delivery.retry_after)


def scrub(text: str, url: str) -> str:
    """`text` without the channel's URL, nor its path or query (they hold its secret)."""
    parts = httpx.URL(url)
    for secret in (url, parts.raw_path.decode("ascii", "replace"), parts.query.decode()):
        if len(secret) > 1:
            text = text.replace(secret, "<channel url>")
    return text


class Notifier:
    """Delivers due notifications: `start()`, `stop()`, or `deliver_due()` once."""

    def __init__(
        self,
        store: Store,
        channels: Sequence[NotifyChannel],
        *,
        holder: str,
        public_url: str | None = None,
        dbt_url: str | None = None,
        policy: RetryPolicy = POLICY,
        poll_interval: float = POLL_INTERVAL,
        timeout: float = TIMEOUT,
        lease: float | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.store = store
        self.channels = tuple(channels)
        self.public_url, self.dbt_url = public_url, dbt_url
        self.policy = policy
        self.poll_interval = poll_interval
        # The lease outlasts a whole batch of timed-out POSTs: a live sender keeps its claim.
        self.outbox = Outbox(store, holder, lease=lease or 2 * BATCH * timeout + 60.0)
        self._http = httpx.Client(
            timeout=timeout,
            follow_redirects=False,  # a redirect could carry the body anywhere
            headers={"User-Agent": f"dbt-tableau-relay/{__version__}"},
            transport=transport,
        )
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, store: Store, settings: Settings, *, holder: str) -> Notifier:
        cloud = settings.dbt.cloud
        return cls(
            store,
            settings.notify,
            holder=holder,
            public_url=settings.public_url,
            dbt_url=cloud.access_url if cloud else None,
        )

    # -- life cycle -----------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="relay-notifier", daemon=True)
        self._thread.start()
        log.info("notify.started", extra={"channels": len(self.channels)})

    def stop(self, timeout: float = 30.0) -> None:
        """End after the POST in flight; what is not sent stays pending for the next start."""
        self._stopping.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)
        self._http.close()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                handled = self.deliver_due()
            except Exception:
                log.exception("notify.loop_failed")  # a database hiccup: try again later
                handled = 0
            if not handled:
                self._wake.wait(self.poll_interval)
                self._wake.clear()

    # -- delivery -----------------------------------------------------------------------

    def deliver_due(self) -> int:
        """Claim and deliver one batch of due notifications; how many were claimed."""
        claimed = self.outbox.claim(BATCH)
        for note in claimed:
            if self._stopping.is_set():
                break  # the rest come back when their lease runs out
            self.deliver(note)
        return len(claimed)

    def deliver(self, note: ClaimedNotification) -> None:
        channel = self._channel(note)
        story = None if channel is None else self._story(note)
        if channel is None or story is None:
            why = "the refresh job is gone" if channel else "the channel is no longer configured"
            self._finish(note, "dropped", f"dropped: {why}")
            return
        delivery = self._post(channel, render(channel.kind, story, note.id), note.id)
        outcome, delay = decide(delivery, note.attempts, self.policy)
        fields: dict[str, object] = {
            "runs": ",".join(r.run_id for r in story.runs),
            "status": delivery.status,
        }
        if outcome == "retry":
            self._retry(note, delay, delivery.error or "", fields)
        elif outcome == "sent":
            self._finish(note, "sent", None, fields)
        else:
            self._finish(note, "failed", delivery.error or "", fields)

    def _channel(self, note: ClaimedNotification) -> NotifyChannel | None:
        """The row's channel, if `notify:` still has that kind at that position."""
        if note.channel >= len(self.channels):
            return None
        channel = self.channels[note.channel]
        return channel if channel.kind == note.channel_kind else None

    def _story(self, note: ClaimedNotification) -> JobStory | None:
        return load_story(
            self.store,
            note.refresh_job_id,
            note.trigger,
            public_url=self.public_url,
            dbt_url=self.dbt_url,
        )

    def _post(self, channel: NotifyChannel, body: dict[str, object], note_id: int) -> Delivery:
        headers = {}
        if channel.kind == "webhook":  # receivers drop a repeat (delivery is at-least-once)
            headers["Idempotency-Key"] = f"dbt-tableau-relay-notification-{note_id}"
        try:
            answer = self._http.post(channel.url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            return Delivery(None, error=scrub(f"{type(exc).__name__}: {exc}", channel.url))
        if answer.is_success:
            return Delivery(answer.status_code)
        text = scrub(answer.text[:ERROR_CHARS].strip(), channel.url)
        return Delivery(
            answer.status_code,
            parse_retry_after(answer.headers.get("Retry-After")),
            f"HTTP {answer.status_code}" + (f": {text}" if text else ""),
        )

    def _retry(
        self, note: ClaimedNotification, delay: float, error: str, fields: dict[str, object]
    ) -> None:
        if self.outbox.retry_later(note, delay, error):
            NOTIFICATIONS.labels("retried").inc()
            extra = _fields(note) | fields
            log.warning("notify.retry", extra=extra | {"retry_in": round(delay, 1), "error": error})

    def _finish(
        self,
        note: ClaimedNotification,
        state: str,
        error: str | None,
        fields: dict[str, object] | None = None,
    ) -> None:
        """Record the row as sent, failed or dropped; count and log it."""
        if state == "sent":
            done = self.outbox.sent(note)
        else:
            done = self.outbox.give_up(note, error or "", state)
        if not done:
            return
        NOTIFICATIONS.labels(state).inc()
        extra = _fields(note) | (fields or {})
        if state == "sent":
            log.info("notify.sent", extra=extra)
        else:
            log.error(f"notify.{state}", extra=extra | {"error": error})


def _fields(note: ClaimedNotification) -> dict[str, object]:
    return {
        "notification": note.id,
        "job_id": note.refresh_job_id,
        "channel": note.channel,
        "kind": note.channel_kind,
        "trigger": note.trigger,
        "attempts": note.attempts,
    }
