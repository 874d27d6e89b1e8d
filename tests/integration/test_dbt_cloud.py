"""The dbt Cloud Admin API client against the emulator over real HTTP."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dbt_tableau_relay.config import DbtCloudSettings
from dbt_tableau_relay.dbt_cloud import Backoff, DbtCloudClient, Run, RunStatus, RunStep
from dbt_tableau_relay.emulators.dbt_cloud import ERROR, RUNNING, SUCCESS, DbtCloudEmulator
from dbt_tableau_relay.errors import (
    ArtifactNotFoundError,
    PermanentDbtCloudError,
    TransientDbtCloudError,
)
from dbt_tableau_relay.logs import JsonFormatter, KeyValueFormatter

ACCOUNT = 41
TOKEN = "dbtc_s3cret-service-token-value"
BUILD = "Invoke dbt with `dbt build`"
DOCS = "Invoke dbt with `dbt docs generate`"
FAST = Backoff(max_attempts=4, base_delay=0.01, max_delay=1.0)

MakeClient = Callable[..., DbtCloudClient]


@pytest.fixture
def emu() -> Iterator[DbtCloudEmulator]:
    with DbtCloudEmulator(accounts={ACCOUNT: TOKEN, ACCOUNT + 1: "other-token"}) as emulator:
        yield emulator


@pytest.fixture
def sleeps() -> list[float]:
    """Every delay the clients of `make_client` slept, in order."""
    return []


@pytest.fixture
def make_client(emu: DbtCloudEmulator, sleeps: list[float]) -> Iterator[MakeClient]:
    clients: list[DbtCloudClient] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)

    def make(token: str = TOKEN, account_id: int = ACCOUNT, **options: Any) -> DbtCloudClient:
        settings = DbtCloudSettings(access_url=emu.url, account_id=account_id, api_token=token)
        # A short artifact_wait: a test that waits by mistake fails in seconds, not minutes.
        options = {"backoff": FAST, "sleep": sleep, "artifact_wait": 10.0, **options}
        client = DbtCloudClient(settings, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: MakeClient) -> DbtCloudClient:
    return make_client()


def build_and_docs(emu: DbtCloudEmulator, **options: Any) -> int:
    """A `dbt build` step, then `dbt docs generate`: each writes its own run_results.json."""
    steps = [
        {"command": "dbt build", "artifacts": {"run_results.json": {"args": {"which": "build"}}}},
        {
            "command": "dbt docs generate",
            "artifacts": {"run_results.json": {"args": {"which": "generate"}}},
        },
    ]
    return emu.add_run(job_id=options.pop("job_id", 123), steps=steps, **options)


def artifact_statuses(emu: DbtCloudEmulator, run_id: int) -> list[int]:
    return [r.status for r in emu.artifact_requests(run_id)]


# runs


def test_get_run_has_its_ids_status_and_steps(
    emu: DbtCloudEmulator, client: DbtCloudClient
) -> None:
    finished = datetime(2025, 5, 6, 7, 8, 9, tzinfo=UTC)
    run_id = build_and_docs(emu, environment_id=5, project_id=6, status=ERROR, finished_at=finished)
    run = client.get_run(run_id)
    assert isinstance(run, Run)
    assert (run.id, run.account_id, run.job_id) == (run_id, ACCOUNT, 123)
    assert (run.environment_id, run.project_id) == (5, 6)
    assert (run.status, run.status_humanized) == (RunStatus.ERROR, "Error")
    assert run.is_complete
    assert run.is_error
    assert not run.is_success
    assert run.finished_at == finished
    assert run.steps == (
        RunStep(1, BUILD, ERROR, run.steps[0].id),
        RunStep(2, DOCS, ERROR, run.steps[1].id),
    )


def test_get_run_takes_the_webhooks_string_ids(
    emu: DbtCloudEmulator, client: DbtCloudClient
) -> None:
    run_id = emu.add_run()
    assert client.get_run(str(run_id)).id == run_id


def test_a_running_run_is_not_complete(emu: DbtCloudEmulator, client: DbtCloudClient) -> None:
    run = client.get_run(emu.add_run(status=RUNNING))
    assert (run.status, run.is_complete, run.finished_at) == (RunStatus.RUNNING, False, None)


def test_an_unknown_run_is_a_permanent_404(client: DbtCloudClient) -> None:
    with pytest.raises(PermanentDbtCloudError, match="404") as caught:
        client.get_run(987654)
    assert caught.value.status == 404


def test_list_runs_is_most_recent_first_and_filtered(
    emu: DbtCloudEmulator, client: DbtCloudClient
) -> None:
    a = emu.add_run(job_id=1, environment_id=10, project_id=20)
    b = emu.add_run(job_id=2, environment_id=10, project_id=20, status=ERROR)
    c = emu.add_run(job_id=2, environment_id=11, project_id=21)
    d = emu.add_run(job_id=2, environment_id=11, project_id=21, status=RUNNING)

    def ids(*args: Any, **kwargs: Any) -> list[int]:
        return [r.id for r in client.list_runs(*args, **kwargs)]

    assert ids() == [d, c, b, a]
    assert ids(2) == [d, c, b]
    assert ids("2", environment_id=11) == [d, c]
    assert ids(project_id=20) == [b, a]
    assert ids(2, status=[SUCCESS, ERROR]) == [c, b]
    sent = emu.requests[-1].query
    assert (sent["order_by"], sent["status__in"], sent["job_definition_id"]) == (
        "-id",
        "[10,20]",
        "2",
    )
    assert all(r.steps == () for r in client.list_runs())


def test_list_runs_pages_with_limit_and_offset(
    emu: DbtCloudEmulator, client: DbtCloudClient
) -> None:
    ids = [emu.add_run(job_id=7) for _ in range(5)]
    assert [r.id for r in client.list_runs(7, limit=2)] == [ids[4], ids[3]]
    assert [r.id for r in client.list_runs(7, limit=2, offset=4)] == [ids[0]]
    assert client.list_runs(7, offset=5) == []


def test_list_runs_finished_after_drops_older_and_unfinished_runs(
    emu: DbtCloudEmulator, client: DbtCloudClient
) -> None:
    since = datetime.now(UTC) - timedelta(minutes=10)
    emu.add_run(job_id=3, finished_at=since - timedelta(minutes=1))
    recent = emu.add_run(job_id=3, finished_at=since + timedelta(minutes=1))
    emu.add_run(job_id=3, status=RUNNING)
    assert [r.id for r in client.list_runs(3, finished_after=since)] == [recent]


@pytest.mark.parametrize("options", [{"limit": 0}, {"limit": 101}, {"offset": -1}])
def test_list_runs_refuses_pages_dbt_cloud_would_refuse(
    client: DbtCloudClient, options: dict[str, int]
) -> None:
    with pytest.raises(ValueError, match="limit"):
        client.list_runs(**options)


# artifacts


def test_without_step_the_artifact_is_the_last_steps(
    emu: DbtCloudEmulator, client: DbtCloudClient
) -> None:
    run_id = build_and_docs(emu)
    assert client.artifact_json(run_id, "run_results.json")["args"]["which"] == "generate"


def test_step_n_is_that_steps_artifact(emu: DbtCloudEmulator, client: DbtCloudClient) -> None:
    run_id = build_and_docs(emu)
    assert client.artifact_json(run_id, "run_results.json", step=1)["args"]["which"] == "build"
    assert client.artifact(run_id, "run_results.json", step=1) == b'{"args": {"which": "build"}}'


def test_an_artifact_in_a_folder(emu: DbtCloudEmulator, client: DbtCloudClient) -> None:
    run_id = emu.add_run(
        steps=[{"command": "dbt build", "artifacts": {"compiled/m a.sql": "select 1"}}]
    )
    assert client.artifact(run_id, "compiled/m a.sql") == b"select 1"


@pytest.mark.parametrize("name", ["", "/", "../runs/1/", "a/../../b", "a//b"])
def test_an_artifact_path_cannot_leave_the_runs_artifacts(
    client: DbtCloudClient, name: str
) -> None:
    with pytest.raises(ValueError, match="artifact path"):
        client.artifact(1, name)


def test_a_404_just_after_the_run_finished_is_retried_until_served(
    emu: DbtCloudEmulator, client: DbtCloudClient
) -> None:
    emu.artifact_delay = 0.5
    run_id = build_and_docs(emu, status=RUNNING)
    emu.finish_run(run_id, SUCCESS)
    assert client.artifact_json(run_id, "run_results.json", step=1)["args"]["which"] == "build"
    statuses = artifact_statuses(emu, run_id)
    assert statuses[0] == 404
    assert statuses[-1] == 200
    assert set(statuses[:-1]) == {404}


def test_a_404_long_after_the_run_finished_is_permanent_at_once(
    emu: DbtCloudEmulator, client: DbtCloudClient
) -> None:
    run_id = build_and_docs(emu, finished_at=datetime.now(UTC) - timedelta(hours=2))
    with pytest.raises(ArtifactNotFoundError, match=r"manifest.json of run \d+.*finished \d+s ago"):
        client.artifact(run_id, "manifest.json")
    assert artifact_statuses(emu, run_id) == [404]


def test_an_artifact_that_never_appears_fails_after_the_wait(
    emu: DbtCloudEmulator, make_client: MakeClient
) -> None:
    client = make_client(artifact_wait=0.3)
    run_id = build_and_docs(emu)
    with pytest.raises(ArtifactNotFoundError, match="still not found") as caught:
        client.artifact(run_id, "manifest.json", step=1)
    assert caught.value.status == 404
    assert len(artifact_statuses(emu, run_id)) > 1
    assert set(artifact_statuses(emu, run_id)) == {404}


def test_a_step_the_run_does_not_have_fails_at_once(
    emu: DbtCloudEmulator, client: DbtCloudClient
) -> None:
    run_id = build_and_docs(emu)
    with pytest.raises(ArtifactNotFoundError, match=r"no such step \(steps: 1, 2\)"):
        client.artifact(run_id, "run_results.json", step=4)
    assert artifact_statuses(emu, run_id) == [404]


def test_artifacts_of_a_running_run_are_a_transient_error(
    emu: DbtCloudEmulator, client: DbtCloudClient
) -> None:
    run_id = build_and_docs(emu, status=RUNNING)
    with pytest.raises(TransientDbtCloudError, match="still running"):
        client.artifact(run_id, "run_results.json")


def test_an_artifact_that_is_not_json_is_refused_by_artifact_json(
    emu: DbtCloudEmulator, client: DbtCloudClient
) -> None:
    run_id = emu.add_run(steps=[{"command": "dbt build", "artifacts": {"run_results.json": "[1]"}}])
    with pytest.raises(PermanentDbtCloudError, match="not a JSON object"):
        client.artifact_json(run_id, "run_results.json")


# transient failures


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_answers_are_retried(
    emu: DbtCloudEmulator, client: DbtCloudClient, status: int
) -> None:
    run_id = emu.add_run()
    emu.faults.fail(count=2, status=status)
    assert client.get_run(run_id).id == run_id
    assert [r.status for r in emu.requests] == [status, status, 200]


def test_5xx_past_the_attempts_is_a_transient_error(
    emu: DbtCloudEmulator, client: DbtCloudClient
) -> None:
    emu.faults.fail(count=10, status=503)
    with pytest.raises(TransientDbtCloudError, match="503") as caught:
        client.list_runs()
    assert caught.value.status == 503
    assert len(emu.requests) == FAST.max_attempts


def test_a_429_waits_at_least_retry_after(
    emu: DbtCloudEmulator, client: DbtCloudClient, sleeps: list[float]
) -> None:
    emu.faults.rate_limit(count=1, retry_after=0.3)
    assert client.list_runs() == []
    assert [r.status for r in emu.requests] == [429, 200]
    assert sleeps[0] >= 0.3


def test_a_429_without_retry_after_backs_off(
    emu: DbtCloudEmulator, client: DbtCloudClient, sleeps: list[float]
) -> None:
    emu.faults.rate_limit(count=2, retry_after=None)
    assert client.list_runs() == []
    assert len(sleeps) == 2
    assert all(0 <= s <= FAST.ceiling(i + 1) for i, s in enumerate(sleeps))


def test_a_retry_after_longer_than_a_call_may_wait_is_raised_with_it(
    emu: DbtCloudEmulator, client: DbtCloudClient, sleeps: list[float]
) -> None:
    emu.faults.rate_limit(count=1, retry_after=120)
    with pytest.raises(TransientDbtCloudError, match="429") as caught:
        client.list_runs()
    assert caught.value.retry_after == 120
    assert sleeps == []


def test_a_dropped_connection_is_retried(emu: DbtCloudEmulator, client: DbtCloudClient) -> None:
    run_id = emu.add_run()
    emu.faults.drop(count=1)
    assert client.get_run(run_id).id == run_id
    assert [r.status for r in emu.requests] == [0, 200]


def test_timeouts_are_retried_then_raised(emu: DbtCloudEmulator, make_client: MakeClient) -> None:
    client = make_client(timeout=0.05, backoff=Backoff(max_attempts=2, base_delay=0.01))
    emu.faults.latency = 0.3
    with pytest.raises(TransientDbtCloudError, match="timed out"):
        client.list_runs()


def test_a_refused_connection_is_transient(make_client: MakeClient, emu: DbtCloudEmulator) -> None:
    client = make_client(backoff=Backoff(max_attempts=2, base_delay=0.01))
    emu.stop()
    with pytest.raises(TransientDbtCloudError, match="ConnectError"):
        client.list_runs()


# permanent failures and the token


def test_a_wrong_token_is_a_permanent_401_without_the_token(
    emu: DbtCloudEmulator, make_client: MakeClient
) -> None:
    wrong = "dbtc_wrong-token-value-xyz"
    client = make_client(token=wrong)
    with pytest.raises(PermanentDbtCloudError) as caught:
        client.get_run(1)
    message = str(caught.value)
    assert caught.value.status == 401
    assert "Invalid token." in message
    assert "api_token" in message
    assert "access_url" in message
    assert wrong not in message
    assert len(emu.requests) == 1


def test_another_accounts_runs_are_a_permanent_403(
    emu: DbtCloudEmulator, make_client: MakeClient
) -> None:
    client = make_client(account_id=ACCOUNT + 1)
    with pytest.raises(PermanentDbtCloudError, match="403") as caught:
        client.list_runs()
    assert caught.value.status == 403


def test_the_token_is_in_no_log_line_error_or_repr(
    emu: DbtCloudEmulator, client: DbtCloudClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    emu.artifact_delay = 0.5
    run_id = build_and_docs(emu)
    emu.faults.fail(count=1)
    emu.faults.rate_limit(count=1, retry_after=0.01)
    client.artifact(run_id, "run_results.json")
    emu.faults.fail(count=10)
    with pytest.raises(TransientDbtCloudError) as caught:
        client.get_run(run_id)
    lines = [KeyValueFormatter().format(r) + JsonFormatter().format(r) for r in caplog.records]
    assert any("dbt_cloud.retry" in line for line in lines)
    assert any("dbt_cloud.artifact_wait" in line for line in lines)
    for text in [*lines, str(caught.value), repr(caught.value), repr(client)]:
        assert TOKEN not in text


def test_access_url_may_end_with_a_slash(emu: DbtCloudEmulator) -> None:
    settings = DbtCloudSettings(access_url=emu.url + "/", account_id=ACCOUNT, api_token=TOKEN)
    with DbtCloudClient(settings) as client:
        assert client.list_runs() == []
