"""The dbt Cloud emulator over plain HTTP: shapes, auth, paging, artifacts, faults, control."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from dbt_tableau_relay.emulators.dbt_cloud import (
    DEMO_TOKEN,
    ERROR,
    RUNNING,
    SETUP_STEPS,
    SUCCESS,
    DbtCloudEmulator,
)

ACCOUNT = 7
TOKEN = "dbtc_test-service-token-7"
OTHER_ACCOUNT = 8
OTHER_TOKEN = "dbtc_test-service-token-8"
BUILD = "Invoke dbt with `dbt build`"
DOCS = "Invoke dbt with `dbt docs generate`"


@pytest.fixture
def emu() -> Iterator[DbtCloudEmulator]:
    with DbtCloudEmulator(accounts={ACCOUNT: TOKEN, OTHER_ACCOUNT: OTHER_TOKEN}) as emulator:
        yield emulator


@pytest.fixture
def http(emu: DbtCloudEmulator) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Token {TOKEN}"}
    with httpx.Client(base_url=f"{emu.url}/api/v2/accounts/{ACCOUNT}", headers=headers) as client:
        yield client


def two_step_run(emu: DbtCloudEmulator, **options: Any) -> int:
    """A `dbt build` step and a trailing `dbt docs generate`, each with its own run_results."""
    steps = [
        {"command": "dbt build", "artifacts": {"run_results.json": {"step": "build"}}},
        {"command": "dbt docs generate", "artifacts": {"run_results.json": {"step": "docs"}}},
    ]
    return emu.add_run(job_id=options.pop("job_id", 100), steps=steps, **options)


def wait_for(predicate: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# shapes


def test_a_run_is_dbts_envelope_with_the_real_fields(
    emu: DbtCloudEmulator, http: httpx.Client
) -> None:
    run_id = two_step_run(emu, environment_id=11, project_id=12)
    answer = http.get(f"/runs/{run_id}/")
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == {
        "code": 200,
        "is_success": True,
        "user_message": "Success!",
        "developer_message": "",
    }
    run = body["data"]
    assert run["id"] == run_id
    assert (run["account_id"], run["job_definition_id"], run["job_id"]) == (ACCOUNT, 100, 100)
    assert (run["environment_id"], run["project_id"]) == (11, 12)
    assert (run["status"], run["status_humanized"]) == (SUCCESS, "Success")
    flags = ("is_complete", "is_success", "is_error", "is_cancelled", "in_progress")
    assert [run[f] for f in flags] == [True, True, False, False, False]
    assert run["has_docs_generated"] is True
    assert run["href"].endswith(f"/deploy/{ACCOUNT}/projects/12/runs/{run_id}/")


def test_timestamps_are_written_as_dbt_writes_them(
    emu: DbtCloudEmulator, http: httpx.Client
) -> None:
    run_id = emu.add_run(finished_at="2025-03-04T05:06:07.123456+00:00")
    run = http.get(f"/runs/{run_id}/").json()["data"]
    assert run["finished_at"] == "2025-03-04 05:06:07.123456+00:00"
    started = datetime.fromisoformat(run["started_at"])
    assert started < datetime.fromisoformat(run["finished_at"])


def test_steps_and_job_come_only_when_included(emu: DbtCloudEmulator, http: httpx.Client) -> None:
    run_id = two_step_run(emu)
    bare = http.get(f"/runs/{run_id}/").json()["data"]
    assert bare["run_steps"] == []
    assert bare["job"] is None
    full = http.get(f"/runs/{run_id}/", params={"include_related": '["run_steps","job"]'})
    data = full.json()["data"]
    assert [(s["index"], s["name"], s["status"]) for s in data["run_steps"]] == [
        (1, BUILD, SUCCESS),
        (2, DOCS, SUCCESS),
    ]
    step = data["run_steps"][0]
    assert (step["run_id"], step["account_id"], step["status_humanized"]) == (
        run_id,
        ACCOUNT,
        "Success",
    )
    assert data["job"]["id"] == 100
    assert data["job"]["execute_steps"] == ["dbt build"]
    assert data["job"]["generate_docs"] is True


def test_include_related_also_reads_a_plain_comma_list(
    emu: DbtCloudEmulator, http: httpx.Client
) -> None:
    run_id = two_step_run(emu)
    data = http.get(f"/runs/{run_id}/", params={"include_related": "run_steps"}).json()["data"]
    assert len(data["run_steps"]) == 2


def test_setup_steps_come_first_as_in_dbt_cloud(emu: DbtCloudEmulator, http: httpx.Client) -> None:
    run_id = emu.add_run(steps=["dbt build"], setup_steps=True)
    data = http.get(f"/runs/{run_id}/?include_related=[%22run_steps%22]").json()["data"]
    assert [s["name"] for s in data["run_steps"]] == [*SETUP_STEPS, BUILD]
    assert [s["index"] for s in data["run_steps"]] == [1, 2, 3, 4]


def test_an_unknown_run_is_404_in_the_envelope(http: httpx.Client) -> None:
    answer = http.get("/runs/999/")
    assert answer.status_code == 404
    assert answer.json()["status"]["is_success"] is False
    assert answer.json()["data"] is None


def test_an_unknown_path_is_404_and_a_post_is_405(
    emu: DbtCloudEmulator, http: httpx.Client
) -> None:
    assert http.get("/jobs/").status_code == 404
    assert http.post(f"/runs/{emu.add_run()}/").status_code == 405


# auth


@pytest.mark.parametrize("scheme", ["Token", "Bearer", "token"])
def test_token_and_bearer_schemes_both_authenticate(emu: DbtCloudEmulator, scheme: str) -> None:
    headers = {"Authorization": f"{scheme} {TOKEN}"}
    answer = httpx.get(f"{emu.url}/api/v2/accounts/{ACCOUNT}/runs/", headers=headers)
    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "Authentication credentials were not provided."),
        ("Token wrong-token", "Invalid token."),
        (f"Basic {TOKEN}", "Authentication credentials were not provided."),
    ],
)
def test_a_missing_or_wrong_token_is_401_in_dbts_envelope(
    emu: DbtCloudEmulator, header: str | None, message: str
) -> None:
    headers = {"Authorization": header} if header else {}
    answer = httpx.get(f"{emu.url}/api/v2/accounts/{ACCOUNT}/runs/", headers=headers)
    assert answer.status_code == 401
    assert answer.json() == {
        "status": {
            "code": 401,
            "is_success": False,
            "user_message": message,
            "developer_message": None,
        },
        "data": None,
    }


def test_a_token_reads_only_its_own_account(emu: DbtCloudEmulator) -> None:
    theirs = emu.add_run(account_id=OTHER_ACCOUNT)
    headers = {"Authorization": f"Token {TOKEN}"}
    url = f"{emu.url}/api/v2/accounts/{OTHER_ACCOUNT}/runs/{theirs}/"
    assert httpx.get(url, headers=headers).status_code == 403
    ours = f"{emu.url}/api/v2/accounts/{ACCOUNT}/runs/{theirs}/"
    assert httpx.get(ours, headers=headers).status_code == 404


def test_the_default_account_is_1_with_the_demo_token() -> None:
    with DbtCloudEmulator() as emu:
        headers = {"Authorization": f"Token {DEMO_TOKEN}"}
        assert (emu.account_id, emu.token) == (1, DEMO_TOKEN)
        assert httpx.get(f"{emu.url}/api/v2/accounts/1/runs/", headers=headers).status_code == 200


# the runs list


def test_the_list_is_oldest_first_unless_ordered_by_minus_id(
    emu: DbtCloudEmulator, http: httpx.Client
) -> None:
    ids = [emu.add_run(job_id=1) for _ in range(3)]
    assert [r["id"] for r in http.get("/runs/").json()["data"]] == ids
    newest_first = http.get("/runs/", params={"order_by": "-id"}).json()["data"]
    assert [r["id"] for r in newest_first] == ids[::-1]


def test_the_list_filters_by_job_environment_project_and_status(
    emu: DbtCloudEmulator, http: httpx.Client
) -> None:
    a = emu.add_run(job_id=1, environment_id=10, project_id=20)
    b = emu.add_run(job_id=2, environment_id=10, project_id=21, status=ERROR)
    c = emu.add_run(job_id=2, environment_id=11, project_id=21, status=RUNNING)
    emu.add_run(account_id=OTHER_ACCOUNT, job_id=2)

    def ids(**params: Any) -> list[int]:
        return [r["id"] for r in http.get("/runs/", params=params).json()["data"]]

    assert ids() == [a, b, c]
    assert ids(job_definition_id=2) == [b, c]
    assert ids(environment_id=10) == [a, b]
    assert ids(project_id=21, job_definition_id=2) == [b, c]
    assert ids(status=ERROR) == [b]
    assert ids(status__in="[10,20]") == [a, b]
    assert ids(id__gt=a) == [b, c]


def test_the_list_pages_with_dbts_pagination_block(
    emu: DbtCloudEmulator, http: httpx.Client
) -> None:
    ids = [emu.add_run(job_id=5) for _ in range(5)]
    params = {"job_definition_id": 5, "order_by": "-id", "limit": 2, "offset": 2}
    body = http.get("/runs/", params=params).json()
    assert [r["id"] for r in body["data"]] == [ids[2], ids[1]]
    assert body["extra"]["pagination"] == {"count": 2, "total_count": 5}
    assert body["extra"]["order_by"] == "-id"
    assert body["extra"]["filters"]["job_definition_id"] == 5
    last = http.get("/runs/", params={**params, "offset": 4}).json()
    assert last["extra"]["pagination"] == {"count": 1, "total_count": 5}


def test_ordering_by_finished_at_puts_unfinished_runs_first_descending(
    emu: DbtCloudEmulator, http: httpx.Client
) -> None:
    old = emu.add_run(finished_at=1_700_000_000)
    running = emu.add_run(status=RUNNING)
    new = emu.add_run(finished_at=1_800_000_000)
    body = http.get("/runs/", params={"order_by": "-finished_at"}).json()
    assert [r["id"] for r in body["data"]] == [running, new, old]


@pytest.mark.parametrize(
    "params",
    [{"limit": 101}, {"limit": 0}, {"offset": -1}, {"limit": "ten"}, {"order_by": "name"}],
)
def test_bad_list_parameters_are_400(http: httpx.Client, params: dict[str, Any]) -> None:
    answer = http.get("/runs/", params=params)
    assert answer.status_code == 400
    assert answer.json()["status"]["is_success"] is False


# artifacts


def test_without_step_the_artifact_is_the_last_steps(
    emu: DbtCloudEmulator, http: httpx.Client
) -> None:
    run_id = two_step_run(emu)
    answer = http.get(f"/runs/{run_id}/artifacts/run_results.json")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"step": "docs"}


def test_step_n_is_that_steps_own_artifact(emu: DbtCloudEmulator, http: httpx.Client) -> None:
    run_id = two_step_run(emu)
    answer = http.get(f"/runs/{run_id}/artifacts/run_results.json", params={"step": 1})
    assert answer.json() == {"step": "build"}


@pytest.mark.parametrize(
    ("path", "step", "status"),
    [
        ("manifest.json", None, 404),  # the last step wrote none
        ("run_results.json", 3, 404),  # no third step
        ("run_results.json", 0, 400),  # steps count from 1
        ("run_results.json", "x", 400),
    ],
)
def test_missing_artifacts_and_bad_steps(
    emu: DbtCloudEmulator, http: httpx.Client, path: str, step: Any, status: int
) -> None:
    run_id = two_step_run(emu)
    params = {"step": step} if step is not None else {}
    assert http.get(f"/runs/{run_id}/artifacts/{path}", params=params).status_code == status


def test_any_file_in_any_folder_is_served_as_stored(
    emu: DbtCloudEmulator, http: httpx.Client
) -> None:
    steps = [{"command": "dbt build", "artifacts": {"compiled/a.sql": "select 1", "x.bin": b"\0"}}]
    run_id = emu.add_run(steps=steps)
    assert http.get(f"/runs/{run_id}/artifacts/compiled/a.sql").text == "select 1"
    assert http.get(f"/runs/{run_id}/artifacts/x.bin").content == b"\0"


def test_artifacts_answer_404_until_the_delay_after_finish(
    emu: DbtCloudEmulator, http: httpx.Client
) -> None:
    emu.artifact_delay = 0.3
    run_id = two_step_run(emu, status=RUNNING)
    url = f"/runs/{run_id}/artifacts/run_results.json"
    assert http.get(url).status_code == 404  # still running
    emu.finish_run(run_id, SUCCESS)
    assert http.get(url).status_code == 404  # finished, not ingested yet
    assert http.get(f"/runs/{run_id}/").json()["data"]["artifacts_saved"] is False
    wait_for(lambda: http.get(url).status_code == 200, "the artifact")
    assert http.get(f"/runs/{run_id}/").json()["data"]["artifacts_saved"] is True


def test_a_run_that_finished_long_ago_serves_its_artifacts_at_once(
    emu: DbtCloudEmulator, http: httpx.Client
) -> None:
    emu.artifact_delay = 3600.0
    run_id = two_step_run(emu, finished_at=time.time() - 7200)
    assert http.get(f"/runs/{run_id}/artifacts/run_results.json").status_code == 200


def test_finishing_a_run_later_sets_status_time_and_steps(
    emu: DbtCloudEmulator, http: httpx.Client
) -> None:
    run_id = emu.add_run(status=RUNNING, steps=["dbt seed", "dbt build"])
    running = http.get(f"/runs/{run_id}/?include_related=run_steps").json()["data"]
    assert (running["status"], running["finished_at"], running["is_complete"]) == (3, None, False)
    emu.finish_run(run_id, ERROR, finished_at="2025-01-02T03:04:05+00:00", steps={1: SUCCESS})
    done = http.get(f"/runs/{run_id}/?include_related=run_steps").json()["data"]
    assert (done["status"], done["status_humanized"], done["is_error"]) == (20, "Error", True)
    assert done["finished_at"] == "2025-01-02 03:04:05.000000+00:00"
    assert [s["status"] for s in done["run_steps"]] == [SUCCESS, ERROR]


def test_artifacts_can_be_added_to_a_step_later(emu: DbtCloudEmulator, http: httpx.Client) -> None:
    run_id = two_step_run(emu)
    emu.set_artifacts(run_id, {"manifest.json": {"nodes": {}}}, step=1)
    url = f"/runs/{run_id}/artifacts/manifest.json"
    assert http.get(url, params={"step": 1}).json() == {"nodes": {}}
    assert http.get(url).status_code == 404


# faults


def test_n_failures_then_answers(emu: DbtCloudEmulator, http: httpx.Client) -> None:
    emu.faults.fail(count=2, status=502)
    assert [http.get("/runs/").status_code for _ in range(3)] == [502, 502, 200]
    assert http.get("/runs/").status_code == 200


def test_a_429_carries_retry_after(emu: DbtCloudEmulator, http: httpx.Client) -> None:
    emu.faults.rate_limit(count=1, retry_after=7)
    answer = http.get("/runs/")
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "7"
    assert answer.json()["status"]["code"] == 429


def test_a_429_without_retry_after(emu: DbtCloudEmulator, http: httpx.Client) -> None:
    emu.faults.rate_limit(count=1, retry_after=None)
    answer = http.get("/runs/")
    assert answer.status_code == 429
    assert "retry-after" not in answer.headers


def test_a_dropped_connection_has_no_answer(emu: DbtCloudEmulator, http: httpx.Client) -> None:
    emu.faults.drop(count=1)
    with pytest.raises(httpx.TransportError):
        http.get("/runs/")
    assert http.get("/runs/").status_code == 200
    assert [r.status for r in emu.requests] == [0, 200]


def test_latency_makes_a_short_timeout_expire(emu: DbtCloudEmulator, http: httpx.Client) -> None:
    emu.faults.latency = 0.5
    with pytest.raises(httpx.TimeoutException):
        http.get("/runs/", timeout=0.05)


def test_faults_never_touch_control_endpoints(emu: DbtCloudEmulator) -> None:
    emu.faults.fail(count=5)
    assert httpx.get(f"{emu.url}/_emulator/runs").status_code == 200


# the request log


def test_the_log_records_calls_but_never_the_token(
    emu: DbtCloudEmulator, http: httpx.Client
) -> None:
    run_id = two_step_run(emu)
    http.get(f"/runs/{run_id}/artifacts/run_results.json", params={"step": 2})
    httpx.get(f"{emu.url}/api/v2/accounts/{ACCOUNT}/runs/")
    first, second = emu.requests
    assert (first.method, first.status, first.query, first.had_token) == (
        "GET",
        200,
        {"step": "2"},
        True,
    )
    assert first.is_artifact
    assert (second.status, second.had_token) == (401, False)
    assert emu.artifact_requests(run_id) == [first]
    logged = httpx.get(f"{emu.url}/_emulator/requests").text
    assert TOKEN not in logged
    assert "/artifacts/run_results.json" in logged


# control endpoints


def test_runs_are_added_finished_and_given_artifacts_over_http(
    emu: DbtCloudEmulator, http: httpx.Client
) -> None:
    spec = {"account_id": ACCOUNT, "job_id": 3, "status": RUNNING, "steps": ["dbt build"]}
    added = httpx.post(f"{emu.url}/_emulator/runs", json=spec)
    assert added.status_code == 201
    run_id = added.json()["id"]
    artifacts = {"step": 1, "artifacts": {"run_results.json": {"ok": True}}}
    assert httpx.post(f"{emu.url}/_emulator/runs/{run_id}/artifacts", json=artifacts).is_success
    finished = httpx.post(f"{emu.url}/_emulator/runs/{run_id}/finish", json={"status": 10})
    assert finished.json()["status"] == SUCCESS
    assert http.get(f"/runs/{run_id}/artifacts/run_results.json").json() == {"ok": True}
    assert [r["id"] for r in httpx.get(f"{emu.url}/_emulator/runs").json()] == [run_id]


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/_emulator/runs", {"colour": "red"}, 400),
        ("/_emulator/runs", {"status": 99}, 400),
        ("/_emulator/runs", {"account_id": 12345}, 400),
        ("/_emulator/runs/424242/finish", {"status": 10}, 404),
        ("/_emulator/faults", {"fail": {"status": 404}}, 400),
        ("/_emulator/settings", {"speed": 2}, 400),
        ("/_emulator/nothing", {}, 404),
    ],
)
def test_bad_control_calls_are_refused(
    emu: DbtCloudEmulator, path: str, body: dict[str, Any], status: int
) -> None:
    assert httpx.post(f"{emu.url}{path}", json=body).status_code == status


def test_faults_settings_and_reset_over_http(emu: DbtCloudEmulator, http: httpx.Client) -> None:
    faults = httpx.post(f"{emu.url}/_emulator/faults", json={"fail": {"count": 1}})
    assert faults.json()["fail"]["count"] == 1
    assert http.get("/runs/").status_code == 503
    settings = httpx.post(f"{emu.url}/_emulator/settings", json={"artifact_delay": 2.5})
    assert settings.json() == {"artifact_delay": 2.5}
    assert emu.artifact_delay == 2.5
    emu.add_run()
    assert httpx.post(f"{emu.url}/_emulator/reset").is_success
    assert http.get("/runs/").json()["data"] == []
    assert len(emu.requests) == 1  # only the call after the reset


# state file and the CLI


def write_state(folder: Path) -> Path:
    (folder / "build").mkdir()
    (folder / "build" / "run_results.json").write_text('{"from": "file"}')
    state = {
        "artifact_delay": 0,
        "jobs": [{"id": 9, "name": "Nightly", "execute_steps": ["dbt build"]}],
        "runs": [
            {
                "id": 555,
                "job_id": 9,
                "finished_at": "2025-06-01T00:00:00Z",
                "steps": [
                    {
                        "command": "dbt build",
                        "artifact_files": {"run_results.json": "build/run_results.json"},
                    },
                    "dbt docs generate",
                ],
            }
        ],
    }
    path = folder / "state.json"
    path.write_text(json.dumps(state))
    return path


def test_a_state_file_loads_jobs_runs_and_artifact_files(tmp_path: Path) -> None:
    with DbtCloudEmulator(state=write_state(tmp_path)) as emu:
        run = emu.run_json(555)
        assert run["job"]["name"] == "Nightly"
        assert [s["index"] for s in run["run_steps"]] == [1, 2]
        headers = {"Authorization": f"Token {emu.token}"}
        url = f"{emu.url}/api/v2/accounts/1/runs/555/artifacts/run_results.json?step=1"
        assert httpx.get(url, headers=headers).json() == {"from": "file"}
        emu.add_run()
        emu.reset()
        assert [r["id"] for r in httpx.get(f"{emu.url}/_emulator/runs").json()] == [555]


def test_a_state_file_with_an_unknown_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"runz": []}))
    with pytest.raises(ValueError, match="unknown state key"):
        DbtCloudEmulator(state=path)


def test_the_cli_serves_the_emulator_until_interrupted(tmp_path: Path) -> None:
    args = [
        sys.executable,
        "-m",
        "dbt_tableau_relay",
        "dbt-cloud-emulator",
        "--port",
        "0",
        "--state",
        str(write_state(tmp_path)),
    ]
    args += ["--account", f"{ACCOUNT}:{TOKEN}"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert f"(account {ACCOUNT})" in line
        url = line.split(" on ")[1].split()[0]
        headers = {"Authorization": f"Bearer {TOKEN}"}
        answer = httpx.get(f"{url}/api/v2/accounts/{ACCOUNT}/runs/555/", headers=headers)
        assert answer.json()["data"]["job_definition_id"] == 9
        proc.send_signal(2)  # SIGINT, as Ctrl-C
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
