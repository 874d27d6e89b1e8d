"""POST /webhooks/dbt over real HTTP: the relay under uvicorn, a real database behind it.

Every test runs on a SQLite file and, where reachable, on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from dbt_tableau_relay import recorder as recorder_module
from dbt_tableau_relay import webhooks as webhooks_module
from dbt_tableau_relay.app import create_app
from dbt_tableau_relay.config import Settings
from dbt_tableau_relay.recorder import Recorder
from dbt_tableau_relay.samples import signed_headers
from dbt_tableau_relay.service import RunningServer
from dbt_tableau_relay.service import serve_in_thread as serve
from dbt_tableau_relay.store import Event, RefreshJob, RefreshJobEvent, Store
from dbt_tableau_relay.webhooks import WebhookContext
from support import empty_database

FIXTURES = Path(__file__).parents[1] / "fixtures" / "dbt-cloud"
SECRET = "current-secret-1f6b"
ROTATED = "next-secret-9a2c"
RULES = [
    {
        "name": "marts",
        "on": {"job_id": [123, 456]},
        "refresh": [{"workbook": "Sales/Executive Overview"}, {"datasource": "Finance/Revenue"}],
    },
    {
        "name": "failures",
        "on": {"event": "job.run.errored", "status": "error"},
        "refresh": [{"workbook_id": "3cc6cd06-89ce-4fdc-b935-5294135d6d42"}],
        "wait": False,
    },
    # A failed run of job 999 refreshes the ledger, whichever of its two events comes.
    {
        "name": "ledger-on-errored",
        "on": {"event": "job.run.errored", "job_id": 999},
        "refresh": [{"datasource": "Finance/Ledger"}],
    },
    {
        "name": "ledger-on-completed",
        "on": {"status": "error", "job_id": 999},
        "refresh": [{"datasource": "Finance/Ledger"}],
    },
]


def make_settings(database_url: str) -> Settings:
    return Settings.model_validate(
        {
            "database_url": database_url,
            "dbt": {"webhook_secrets": [SECRET, ROTATED]},
            "tableau": {"server_url": "http://127.0.0.1:9", "token_name": "t", "token_secret": "s"},
            "rules": RULES,
        }
    )


def sample(name: str = "job.run.completed") -> bytes:
    """dbt's documented sample, byte for byte (pretty-printed)."""
    return (FIXTURES / f"{name}.json").read_bytes()


def variant(name: str = "job.run.completed", **changes: Any) -> bytes:
    doc = json.loads(sample(name))
    data = changes.pop("data", {})
    doc.update(changes)
    doc["data"].update(data)
    return json.dumps(doc, indent=2).encode()


@dataclass
class Relay:
    server: RunningServer
    client: httpx.Client
    store: Store

    def post(self, body: bytes, secret: str = SECRET, **headers: str) -> httpx.Response:
        sent = signed_headers(body, secret) | headers
        return self.client.post("/webhooks/dbt", content=body, headers=sent)

    def count(self, model: Any, *where: Any) -> int:
        with self.store.session(readonly=True) as session:
            return session.scalar(select(func.count()).select_from(model).where(*where)) or 0

    def events(self) -> list[Event]:
        with self.store.session(readonly=True) as session:
            return list(session.scalars(select(Event).order_by(Event.id)))

    def jobs(self) -> list[RefreshJob]:
        with self.store.session(readonly=True) as session:
            return list(session.scalars(select(RefreshJob).order_by(RefreshJob.id)))


@pytest.fixture(scope="module")
def running_relay(module_database_url: str) -> Iterator[Relay]:
    """One relay per backend for the module (start-up is most of a test's time)."""
    url = module_database_url
    store = Store(url)
    app = create_app(make_settings(url), store=store)
    with serve(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        yield Relay(server, client, store)
    store.dispose()


@pytest.fixture
def relay(running_relay: Relay) -> Relay:
    """The module's relay, its database emptied for this test."""
    empty_database(running_relay.store)
    return running_relay


def test_signed_completed_event_is_queued_with_its_refresh_jobs(relay: Relay) -> None:
    response = relay.post(sample())
    assert response.status_code == 202
    assert response.json() == {
        "status": "queued",
        "event_id": "wev_2L6ZDoilyiWzKkSA59Gmc2d7FDD",
        "refreshes_queued": 2,
    }
    (event,) = relay.events()
    assert (event.outcome, event.refreshes, event.event_type) == ("queued", 2, "job.run.completed")
    assert (event.job_id, event.run_id, event.account_id, event.run_status_code) == (
        "123",
        "12345",
        "1",
        10,
    )
    assert event.body == sample().decode()
    jobs = relay.jobs()
    assert [j.target_key for j in jobs] == [
        "datasource:path:Finance/Revenue",
        "workbook:path:Sales/Executive Overview",
    ]
    for job in jobs:
        assert (job.state, job.rule_name, job.wait, job.incremental) == ("queued", "marts", 1, 0)
        assert job.last_event_at == event.received_at
        assert job.not_before.tzinfo is not None
    assert relay.count(RefreshJobEvent, RefreshJobEvent.event_pk == event.id) == 2


def test_repeated_event_is_a_duplicate_and_creates_nothing(relay: Relay) -> None:
    assert relay.post(sample()).status_code == 202
    response = relay.post(sample())
    assert response.status_code == 200
    assert response.json()["status"] == "duplicate"
    assert response.json()["event_id"] == "wev_2L6ZDoilyiWzKkSA59Gmc2d7FDD"
    assert (relay.count(Event), relay.count(RefreshJob), relay.count(RefreshJobEvent)) == (1, 2, 2)


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "0" * 64},
        {"Authorization": ""},
        {"Authorization": "Bearer something"},
    ],
)
def test_bad_signature_is_401_and_stores_nothing(relay: Relay, headers: dict[str, str]) -> None:
    response = relay.client.post("/webhooks/dbt", content=sample(), headers=headers)
    assert response.status_code == 401
    assert "error" in response.json()
    assert relay.count(Event) == 0


def test_missing_signature_is_401(relay: Relay) -> None:
    response = relay.client.post("/webhooks/dbt", content=sample())
    assert response.status_code == 401
    assert relay.count(Event) == 0


def test_signature_under_an_unknown_secret_is_401(relay: Relay) -> None:
    assert relay.post(sample(), secret="not-configured").status_code == 401
    assert relay.count(Event) == 0


def test_rotated_secret_is_accepted(relay: Relay) -> None:
    assert relay.post(sample(), secret=ROTATED).status_code == 202


def test_uppercase_signature_is_accepted(relay: Relay) -> None:
    signature = signed_headers(sample(), SECRET)["Authorization"]
    response = relay.post(sample(), Authorization=signature.upper())
    assert response.status_code == 202


def test_answers_and_logs_never_echo_the_secret_or_signature(
    relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    signature = signed_headers(sample(), SECRET)["Authorization"]
    answers = [
        relay.post(sample()).text,
        relay.post(sample(), secret="wrong").text,
        relay.post(b'{"x": 1}').text,
    ]
    seen = "\n".join(answers) + caplog.text + str([r.__dict__ for r in caplog.records])
    for secret in (SECRET, ROTATED, signature):
        assert secret not in seen


def test_oversized_content_length_is_413_before_the_body_is_read(relay: Relay) -> None:
    """Only the headers are sent: the relay answers without waiting for 2 MiB."""
    with socket.create_connection((relay.server.host, relay.server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /webhooks/dbt HTTP/1.1\r\nHost: relay\r\nAuthorization: " + b"0" * 64 + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: 2097152\r\n\r\n"
        )
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413")
    assert relay.count(Event) == 0


@pytest.mark.parametrize(
    "authorization",
    ["00", "sha256=" + "a" * 64, "a" * 63, "a" * 65, "g" * 64, "Bearer " + "a" * 64, "x" * 9000],
)
def test_a_malformed_signature_is_401_before_the_body_is_sent(
    relay: Relay, authorization: str
) -> None:
    """Only the headers go out: the 401 comes at once, not after the body timeout (a 408),
    and the relay closes the connection rather than wait for a body it will not read."""
    with socket.create_connection((relay.server.host, relay.server.port), timeout=60) as sock:
        sock.sendall(
            b"POST /webhooks/dbt HTTP/1.1\r\nHost: relay\r\n"
            + f"Authorization: {authorization}\r\n".encode()
            + b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        )
        answer = b"".join(iter(lambda: sock.recv(65536), b""))  # to the relay's close
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401"), answer
    assert b"connection: close" in head.lower()
    assert json.loads(body) == {
        "error": "unauthorized: Authorization is not a hex HMAC-SHA256 signature"
        " (64 hex characters)"
    }
    assert relay.count(Event) == 0


def test_a_flood_of_bad_signatures_logs_a_bounded_number_of_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every refusal is counted on /metrics; the log gets one line per LOG_INTERVAL, which
    says how many refusals it stands for, so a flood cannot fill the disk."""
    caplog.set_level(logging.INFO)
    store = Store(f"sqlite:///{tmp_path / 'relay.db'}")
    app = create_app(make_settings(store.url), store=store)  # throttles of its own
    flood = ["0" * 64, "00"] * 150  # well-formed and wrong; malformed
    with serve(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        started = time.monotonic()
        answers = [
            client.post("/webhooks/dbt", content=sample(), headers={"Authorization": a})
            for a in flood
        ]
        elapsed = time.monotonic() - started
    store.dispose()
    assert {a.status_code for a in answers} == {401}
    lines = [r for r in caplog.records if r.getMessage() == "webhook.unauthorized"]
    assert 1 <= len(lines) <= 1 + elapsed // webhooks_module.LOG_INTERVAL + 1
    told = sum(1 + getattr(r, "suppressed", 0) for r in lines)
    assert told <= len(flood)


def test_oversized_chunked_body_is_413(relay: Relay) -> None:
    chunk = b" " * 65536

    def body() -> Iterator[bytes]:
        yield b'{"eventId": "big", "padding": "'
        for _ in range(20):  # 1.25 MiB
            yield chunk

    response = relay.client.post(
        "/webhooks/dbt", content=body(), headers={"Authorization": "0" * 64}
    )
    assert response.status_code == 413
    assert relay.count(Event) == 0


def test_body_just_under_the_limit_is_read(relay: Relay) -> None:
    doc = json.loads(sample())
    doc["padding"] = " " * (1024 * 1024 - len(json.dumps(doc)) - 20)
    response = relay.post(json.dumps(doc).encode())
    assert response.status_code == 202


def test_signed_body_that_is_not_an_event_is_400_and_stored_invalid(relay: Relay) -> None:
    body = variant(eventType="job.run.exploded")
    response = relay.post(body)
    assert response.status_code == 400
    message = response.json()["error"]
    assert "eventType" in message
    (event,) = relay.events()
    assert (event.outcome, event.event_id, event.detail) == ("invalid", None, message)
    assert event.body == body.decode()
    assert relay.count(RefreshJob) == 0


def test_signed_binary_garbage_is_stored_readably(relay: Relay) -> None:
    response = relay.post(b"\x00\xff\xfe not json")
    assert response.status_code == 400
    (event,) = relay.events()
    assert event.outcome == "invalid"
    assert "not JSON" in (event.detail or "")


def test_event_no_rule_matches_is_200_ignored_and_stored(relay: Relay) -> None:
    response = relay.post(variant(data={"jobId": "999"}))
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    assert response.json()["refreshes_queued"] == 0
    (event,) = relay.events()
    assert (event.outcome, event.refreshes, event.job_id) == ("ignored", 0, "999")
    assert relay.count(RefreshJob) == 0


def test_started_event_is_ignored(relay: Relay) -> None:
    response = relay.post(sample("job.run.started"))
    assert (response.status_code, response.json()["status"]) == (200, "ignored")
    assert relay.events()[0].run_status_code == 3


def test_errored_event_queues_what_the_error_rule_names(relay: Relay) -> None:
    response = relay.post(sample("job.run.errored"))
    assert response.status_code == 202
    assert response.json()["refreshes_queued"] == 1
    (job,) = relay.jobs()
    assert job.target_key == "workbook:luid:3cc6cd06-89ce-4fdc-b935-5294135d6d42"
    assert (job.rule_name, job.wait) == ("failures", False)


def test_two_events_for_one_target_coalesce_into_one_queued_job(relay: Relay) -> None:
    assert relay.post(sample()).status_code == 202
    assert relay.post(variant(eventId="wev_second", data={"runId": "12346"})).status_code == 202
    first, second = relay.events()
    jobs = relay.jobs()
    assert len(jobs) == 2
    for job in jobs:
        assert relay.count(RefreshJobEvent, RefreshJobEvent.refresh_job_id == job.id) == 2
        assert job.last_event_at == second.received_at > first.received_at


def test_an_event_after_the_job_was_sent_queues_a_new_job(relay: Relay) -> None:
    assert relay.post(sample()).status_code == 202
    with relay.store.session() as session:
        session.execute(update(RefreshJob).values(state="sending"))
    later_run = variant(eventId="wev_later", data={"runId": "12346"})
    assert relay.post(later_run).status_code == 202
    states = sorted((j.target_key, j.state) for j in relay.jobs())
    assert [s for _, s in states] == ["queued", "sending", "queued", "sending"]


def test_another_event_of_a_run_already_refreshed_asks_for_nothing(relay: Relay) -> None:
    """A second webhook subscription, or the reconciler before: one run, one set of refreshes."""
    assert relay.post(sample()).status_code == 202
    with relay.store.session() as session:
        session.execute(update(RefreshJob).values(state="sending"))
    answer = relay.post(variant(eventId="wev_same_run"))
    assert (answer.status_code, answer.json()["status"]) == (200, "duplicate")
    assert [j.state for j in relay.jobs()] == ["sending", "sending"]
    [_, again] = relay.events()
    assert (again.outcome, again.detail) == (
        "ignored",
        "run 12345 already asked for these refreshes",
    )


def test_errored_then_completed_for_one_failed_run_refresh_once(relay: Relay) -> None:
    """dbt sends both for a failed run; a rule matching both asks for one refresh."""
    errored = variant("job.run.errored", data={"jobId": "999", "runId": "777"})
    completed = variant(
        eventId="wev_777_done", data={"jobId": "999", "runId": "777", "runStatusCode": 20}
    )
    assert relay.post(errored).json()["status"] == "queued"
    assert relay.post(completed).json()["status"] == "duplicate"
    ledger = [j for j in relay.jobs() if j.target_ref == "Finance/Ledger"]
    assert len(ledger) == 1


def test_fifty_concurrent_senders_are_all_stored(relay: Relay) -> None:
    bodies = [variant(eventId=f"wev_concurrent_{i:02d}", data={"runId": str(i)}) for i in range(50)]

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=relay.server.url, timeout=10) as client:
            return await asyncio.gather(
                *(
                    client.post("/webhooks/dbt", content=b, headers=signed_headers(b, SECRET))
                    for b in bodies
                )
            )

    responses = asyncio.run(send_all())
    assert [r.status_code for r in responses] == [202] * 50
    assert relay.count(Event, Event.outcome == "queued") == 50
    assert relay.count(RefreshJob) == 2  # all coalesced into one queued job per target
    assert relay.count(RefreshJobEvent) == 100


def test_store_failure_is_503_and_the_retry_succeeds(
    relay: Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(recorder_module, "write_batch", broken)
    response = relay.post(sample())
    assert response.status_code == 503
    assert "error" in response.json()
    monkeypatch.undo()
    assert relay.post(sample()).status_code == 202  # dbt's retry
    assert relay.count(Event) == 1


def test_health_ready_and_metrics(relay: Relay) -> None:
    assert relay.client.get("/healthz").status_code == 200
    assert relay.client.get("/readyz").json() == {"status": "ready"}
    relay.post(sample(), secret="wrong")
    relay.post(sample())
    metrics = relay.client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    for outcome in webhooks_module.OUTCOMES:
        assert f'relay_webhooks_total{{outcome="{outcome}"}}' in metrics.text


def test_counters_count_each_outcome(relay: Relay) -> None:
    def counts() -> dict[str, float]:
        lines = relay.client.get("/metrics").text.splitlines()
        found = [ln for ln in lines if ln.startswith("relay_webhooks_total{")]
        return {ln.split('"')[1]: float(ln.rsplit(" ", 1)[1]) for ln in found}

    before = counts()
    relay.post(sample())
    relay.post(sample())
    relay.post(sample(), secret="wrong")
    relay.post(b"[]")
    relay.post(sample("job.run.started"))
    after = counts()
    delta = {k: after[k] - before.get(k, 0) for k in after}
    assert delta == {
        "accepted": 1,
        "duplicate": 1,
        "unauthorized": 1,
        "invalid": 1,
        "ignored": 1,
        "too_large": 0,
        "timeout": 0,
        "stale": 0,
        "error": 0,
    }


def test_readyz_is_503_when_the_database_is_gone(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'relay.db'}")
    app = create_app(make_settings(store.url), store=store)
    with serve(app) as server, httpx.Client(base_url=server.url) as client:
        assert client.get("/readyz").status_code == 200

        def gone() -> None:
            raise OSError("database unreachable")

        store.ping = gone  # type: ignore[method-assign]
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200
    store.dispose()


def test_a_slow_store_is_503_before_dbts_deadline_and_the_retry_is_a_duplicate(
    relay: Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = recorder_module.write_batch
    monkeypatch.setattr(webhooks_module, "RECORD_TIMEOUT", 0.2)

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.6)
        return real(*args, **kwargs)

    monkeypatch.setattr(recorder_module, "write_batch", slow)
    assert relay.post(sample()).status_code == 503
    monkeypatch.undo()
    # dbt retries; the slow write committed after all (or does, before the retry's turn).
    assert relay.post(sample()).json()["status"] == "duplicate"


def test_other_methods_on_the_webhook_path_are_405(relay: Relay) -> None:
    assert relay.client.get("/webhooks/dbt").status_code == 405
    assert relay.count(Event) == 0


def test_the_router_alone_serves_the_endpoint(store: Store) -> None:
    """`webhooks.router` works in any FastAPI app that puts a WebhookContext on its state."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store.migrate()
        recorder = Recorder(store)
        recorder.start()
        app.state.webhooks = WebhookContext.from_settings(make_settings(store.url), recorder)
        yield
        recorder.stop()

    app = FastAPI(lifespan=lifespan)
    app.include_router(webhooks_module.router)
    with serve(app) as server, httpx.Client(base_url=server.url) as client:
        body = sample()
        response = client.post("/webhooks/dbt", content=body, headers=signed_headers(body, SECRET))
    assert response.status_code == 202
    assert response.json()["refreshes_queued"] == 2
