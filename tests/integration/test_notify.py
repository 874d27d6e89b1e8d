"""Notifications against real HTTP receivers and real databases (SQLite and PostgreSQL).

The refresh jobs are driven through `RefreshQueue`'s transitions, as the
worker drives them; the notifier delivers to `receiver.Receiver`s that record
each body and answer as scripted (500 then 200, 404, ...).
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator

import pytest
from harness import wait_until
from prometheus_client import REGISTRY
from sqlalchemy import select, update

from dbt_tableau_relay.config import NotifyChannel, Rule
from dbt_tableau_relay.errors import PermanentTableauError, TransientTableauError
from dbt_tableau_relay.events import parse_event
from dbt_tableau_relay.notifications import (
    Notification,
    load_story,
    notifications_of,
    routes_of,
)
from dbt_tableau_relay.notifier import Notifier
from dbt_tableau_relay.queue import ClaimedJob, RefreshQueue
from dbt_tableau_relay.recorder import Submission, write_batch
from dbt_tableau_relay.retry import RetryPolicy
from dbt_tableau_relay.rules import match
from dbt_tableau_relay.samples import sample_event
from dbt_tableau_relay.store import RefreshJob, Store, utcnow
from receiver import Receiver

RULES = [
    Rule.model_validate(
        {"name": "sales", "on": {"job_id": 101}, "refresh": [{"workbook": "Sales/Executive"}]}
    )
]
FAST = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)
PUBLIC = "https://relay.example.com"


def channel(kind: str, url: str, *on: str) -> NotifyChannel:
    return NotifyChannel.model_validate({kind: url} | ({"on": list(on)} if on else {}))


def record(store: Store, run_id: int = 70403103) -> None:
    """A dbt job 101 run's completed event, recorded as the recorder does."""
    body = sample_event(job_id=101, run_id=run_id)
    event = parse_event(body)
    with store.transaction() as conn:
        write_batch(conn, [Submission(body, utcnow(), event, match(RULES, event))])


def claimed(queue: RefreshQueue) -> ClaimedJob:
    [job] = queue.claim(1)
    return job


def fail_a_refresh(store: Store, channels: list[NotifyChannel], run_id: int = 70403103) -> int:
    """A job of run `run_id` that Tableau refused (403004); its id."""
    record(store, run_id)
    queue = RefreshQueue(store, "worker-a", notify=routes_of(channels))
    job = claimed(queue)
    queue.fail(job, PermanentTableauError("Tableau 403004: forbidden", code="403004"))
    return job.id


def notifier(store: Store, channels: list[NotifyChannel], **kw: object) -> Notifier:
    options: dict[str, object] = {
        "holder": "notifier-a",
        "public_url": PUBLIC,
        "policy": FAST,
        "poll_interval": 0.02,
        "timeout": 5.0,
    }
    return Notifier(store, channels, **options | kw)  # type: ignore[arg-type]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("relay_notifications_total", {"outcome": outcome}) or 0.0


def test_a_failed_refresh_notifies_with_its_item_rule_run_and_error(
    store: Store, receiver: Receiver
) -> None:
    channels = [channel("webhook", receiver.url)]
    job_id = fail_a_refresh(store, channels)
    n = notifier(store, channels)
    assert n.deliver_due() == 1
    [body] = receiver.bodies()
    assert body["outcome"] == "failed"
    assert body["item"] == {"kind": "workbook", "path": "Sales/Executive", "luid": None}
    assert body["refresh_job"]["rule"] == "sales"
    assert body["refresh_job"]["url"] == f"{PUBLIC}/jobs/{job_id}"
    assert body["tableau"]["error_code"] == "403004"
    [run] = body["dbt"]["runs"]
    assert (run["run_id"], run["job_id"], run["job_name"]) == (
        "70403103",
        "101",
        "Job 101 (dbt build)",
    )
    [row] = notifications_of(store, job_id)
    assert (row.state, row.attempts, row.sent_at is not None) == ("sent", 1, True)


def test_a_receiver_answering_500_gets_the_message_later(store: Store) -> None:
    with Receiver(answers=[500]) as receiver:
        channels = [channel("slack", receiver.url)]
        job_id = fail_a_refresh(store, channels)
        retried, sent = counted("retried"), counted("sent")
        n = notifier(store, channels)
        n.start()
        try:
            first, second = receiver.wait_for(2)
            wait_until(lambda: notifications_of(store, job_id)[0].state == "sent")
        finally:
            n.stop()
    assert first.body == second.body  # the same message, sent again
    [row] = notifications_of(store, job_id)
    assert row.attempts == 2
    assert row.last_error == "HTTP 500: internal_error"
    assert (counted("retried") - retried, counted("sent") - sent) == (1, 1)


def test_a_sent_message_is_not_sent_again_after_a_restart(store: Store, receiver: Receiver) -> None:
    channels = [channel("teams", receiver.url)]
    fail_a_refresh(store, channels)
    first = notifier(store, channels)
    assert first.deliver_due() == 1
    first.stop()
    again = notifier(store, channels, holder="notifier-b")
    assert again.deliver_due() == 0
    again.stop()
    assert receiver.count() == 1


def test_a_notifier_that_died_holding_a_message_leaves_it_to_the_next(
    store: Store, receiver: Receiver
) -> None:
    channels = [channel("webhook", receiver.url)]
    job_id = fail_a_refresh(store, channels)
    dead = notifier(store, channels, lease=0.2)
    assert len(dead.outbox.claim(10)) == 1  # claimed, then the process died before posting
    successor = notifier(store, channels, holder="notifier-b")
    wait_until(lambda: successor.deliver_due() == 1)
    assert receiver.count() == 1
    assert notifications_of(store, job_id)[0].state == "sent"


def test_a_repeat_after_a_crash_carries_the_same_id(
    store: Store, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At-least-once: posted, then died before recording it; the repeat is recognisable."""
    channels = [channel("webhook", receiver.url)]
    fail_a_refresh(store, channels)
    crashing = notifier(store, channels, lease=0.2)

    def crash(_: object) -> bool:
        raise OSError("the process died")

    monkeypatch.setattr(crashing.outbox, "sent", crash)
    with pytest.raises(OSError, match="died"):
        crashing.deliver_due()
    successor = notifier(store, channels, holder="notifier-b")
    wait_until(lambda: successor.deliver_due() == 1)
    first, second = receiver.wait_for(2)
    assert first.json()["id"] == second.json()["id"]
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]


def test_a_refused_message_fails_at_once(store: Store) -> None:
    with Receiver(answers=[404]) as receiver:
        channels = [channel("slack", receiver.url)]
        job_id = fail_a_refresh(store, channels)
        failed = counted("failed")
        notifier(store, channels).deliver_due()
        assert receiver.count() == 1
    [row] = notifications_of(store, job_id)
    assert (row.state, row.last_error) == ("failed", "HTTP 404: internal_error")
    assert counted("failed") - failed == 1


def test_retries_end_after_max_attempts(store: Store) -> None:
    with Receiver(answers=[503] * 10) as receiver:
        channels = [channel("webhook", receiver.url)]
        job_id = fail_a_refresh(store, channels)
        n = notifier(store, channels)
        n.start()
        try:
            wait_until(lambda: notifications_of(store, job_id)[0].state == "failed")
        finally:
            n.stop()
        assert receiver.count() == FAST.max_attempts


def test_an_unreachable_receiver_is_retried_and_its_url_never_logged(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/services/T0/B0/xoxb-very-secret"
    channels = [channel("slack", url)]
    job_id = fail_a_refresh(store, channels)
    with caplog.at_level(logging.DEBUG):
        notifier(store, channels).deliver_due()
    [row] = notifications_of(store, job_id)
    assert (row.state, row.attempts) == ("pending", 1)
    assert (row.last_error or "").startswith("ConnectError")
    assert "xoxb-very-secret" not in caplog.text + row.last_error
    assert "notify.retry" in caplog.text


def test_a_channel_no_longer_configured_is_dropped(store: Store, receiver: Receiver) -> None:
    job_id = fail_a_refresh(store, [channel("slack", receiver.url)])
    notifier(store, [channel("teams", receiver.url)]).deliver_due()  # slot 0 is Teams now
    assert receiver.count() == 0
    assert notifications_of(store, job_id)[0].state == "dropped"


# -- which transitions make messages -----------------------------------------------


def test_by_default_only_failed_and_dead_jobs_notify(store: Store) -> None:
    quiet, loud = (
        channel("slack", "https://hooks.example/a"),
        channel("webhook", "https://hooks.example/b", "failed", "dead", "succeeded"),
    )
    record(store)
    queue = RefreshQueue(store, "worker-a", notify=routes_of([quiet, loud]))
    job = claimed(queue)
    queue.sent(job, "tableau-job-1", "luid-1", first_poll=0.0)
    queue.finished(claimed(queue), 0, None, succeeded=True)
    [row] = notifications_of(store, job.id)
    assert (row.channel, row.channel_kind, row.trigger) == (1, "webhook", "succeeded")


def test_a_dead_job_notifies_as_dead(store: Store) -> None:
    channels = [channel("webhook", "https://hooks.example/a")]
    record(store)
    queue = RefreshQueue(store, "worker-a", notify=routes_of(channels))
    job = claimed(queue)
    queue.dead(job, TransientTableauError("Tableau 503: busy", status=503))
    assert [r.trigger for r in notifications_of(store, job.id)] == ["dead"]


def test_a_transition_lost_with_its_lease_makes_no_message(store: Store) -> None:
    channels = [channel("webhook", "https://hooks.example/a")]
    record(store)
    queue = RefreshQueue(store, "worker-a", notify=routes_of(channels))
    job = claimed(queue)
    with store.session() as session:  # another worker took the job over
        session.execute(update(RefreshJob).values(claimed_by="worker-b"))
    queue.fail(job, "too late")
    assert notifications_of(store, job.id) == []


def test_a_finish_code_and_notes_reach_the_message(store: Store, receiver: Receiver) -> None:
    channels = [channel("webhook", receiver.url)]
    record(store)
    queue = RefreshQueue(store, "worker-a", notify=routes_of(channels))
    queue.sent(claimed(queue), "tableau-job-7", "luid-7", first_poll=0.0)
    queue.finished(claimed(queue), 1, "Extract too large", succeeded=False)
    notifier(store, channels).deliver_due()
    [body] = receiver.bodies()
    assert body["tableau"] == {
        "job_id": "tableau-job-7",
        "finish_code": 1,
        "error_code": "finishCode 1",
        "message": "Extract too large",
    }
    assert body["item"]["luid"] == "luid-7"


def test_rows_name_the_channel_never_its_url(store: Store) -> None:
    fail_a_refresh(store, [channel("slack", "https://hooks.slack.com/services/T0/B0/xyz")])
    with store.session(readonly=True) as session:
        values = [str(v) for row in session.query(Notification).all() for v in vars(row).values()]
    assert not [v for v in values if "xyz" in v or "hooks.slack" in v]


def test_a_lineage_made_job_is_named_by_the_path_its_decision_found(store: Store) -> None:
    """Lineage queues jobs by LUID; the decision kept on the job knows the item's path."""
    decision = {
        "kind": "datasource",
        "luid": "ds-9",
        "path": "Finance/Revenue",
        "action": "refresh",
    }
    now = utcnow()
    with store.session() as session:
        session.add(
            RefreshJob(
                target_kind="datasource",
                target_by="luid",
                target_ref="ds-9",
                target_key="datasource:luid:ds-9",
                rule_name="downstream",
                incremental=False,
                wait=True,
                state="failed",
                attempts=1,
                not_before=now,
                created_at=now,
                updated_at=now,
                last_event_at=now,
                explanation=json.dumps(decision),
            )
        )
    with store.session(readonly=True) as session:
        job_id = session.scalars(select(RefreshJob.id)).one()
    story = load_story(store, job_id, "failed")
    assert story is not None
    assert (story.path, story.luid, story.item) == (
        "Finance/Revenue",
        "ds-9",
        "data source Finance/Revenue",
    )
