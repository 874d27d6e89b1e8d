"""The relay's Tableau client against the emulator, over real HTTP.

One behaviour per test: sessions, version, resolution, refresh, jobs, and
each error code and fault the client must turn into the right exception.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from dbt_tableau_relay.config import TableauSettings, Target
from dbt_tableau_relay.emulators.tableau import Emulator
from dbt_tableau_relay.errors import (
    AlreadyQueuedError,
    JobWaitTimeout,
    NotFoundError,
    PermanentTableauError,
    TargetError,
    TransientTableauError,
)
from dbt_tableau_relay.polling import next_poll
from dbt_tableau_relay.tableau import TableauClient

SITE = "marketing"
PAT_NAME = "relay-pat"
PAT_SECRET = "pat-secret-9f8e7d"

EXEC_OVERVIEW = Target(workbook="Sales/Executive Overview")
LEDGER = Target(datasource="Finance/Legacy Ledger")


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(site=SITE, pat_name=PAT_NAME, pat_secret=PAT_SECRET, job_duration=0.3) as e:
        yield e


def settings_for(emu: Emulator, **overrides: object) -> TableauSettings:
    values: dict[str, object] = {
        "server_url": emu.url,
        "site": SITE,
        "token_name": PAT_NAME,
        "token_secret": PAT_SECRET,
        "request_timeout": 2.0,
    }
    return TableauSettings.model_validate(values | overrides)


@pytest.fixture
def client(emu: Emulator) -> Iterator[TableauClient]:
    with TableauClient(settings_for(emu), sleep=lambda _: None) as c:
        yield c


# -- sessions ------------------------------------------------------------------


def test_one_sign_in_serves_many_calls_from_many_threads(
    emu: Emulator, client: TableauClient
) -> None:
    threads = [threading.Thread(target=client.items, args=("workbook",)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(emu.sign_ins()) == 1


def test_api_version_comes_from_server_info(emu: Emulator, client: TableauClient) -> None:
    client.connect()
    assert client.api_version == "3.27"
    assert any(r.path.lower().endswith("/serverinfo") for r in emu.requests)


def test_server_info_failure_is_an_error_not_a_silent_old_version(emu: Emulator) -> None:
    emu.faults.fail(count=1, status=503)
    with TableauClient(settings_for(emu)) as client, pytest.raises(TransientTableauError):
        client.connect()


def test_bad_token_is_permanent_and_never_echoes_the_secret(emu: Emulator) -> None:
    with (
        TableauClient(settings_for(emu, token_secret="wrong-secret-123")) as client,
        pytest.raises(PermanentTableauError, match="401001") as info,
    ):
        client.connect()
    assert "wrong-secret-123" not in str(info.value)


def test_superseded_session_signs_in_again_once(emu: Emulator, client: TableauClient) -> None:
    client.connect()
    emu.invalidate_sessions()
    assert client.items("datasource")
    assert len(emu.sign_ins()) == 2
    assert client.sign_in_count == 2


def test_invalidated_sessions_cause_one_sign_in_not_a_storm(
    emu: Emulator, client: TableauClient
) -> None:
    client.connect()
    emu.invalidate_sessions()
    barrier = threading.Barrier(8)
    errors: list[Exception] = []

    def call() -> None:
        barrier.wait()
        try:
            client.items("workbook")
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(emu.sign_ins()) == 2


def test_another_sign_in_with_the_same_pat_is_survived(
    emu: Emulator, client: TableauClient
) -> None:
    """Tableau's one-session-per-PAT rule: a second client knocks out the first."""
    client.connect()
    with TableauClient(settings_for(emu)) as intruder:
        intruder.connect()
        assert client.items("workbook")
    assert client.sign_in_count == 2


def test_expired_session_is_renewed(emu: Emulator, client: TableauClient) -> None:
    emu.session_ttl = 0.2
    client.connect()
    threading.Event().wait(0.4)
    assert client.items("workbook")
    assert client.sign_in_count == 2


def test_session_is_renewed_before_it_expires(emu: Emulator) -> None:
    now = [0.0]
    with TableauClient(settings_for(emu), session_lifetime=5.0, clock=lambda: now[0]) as c:
        c.connect()
        now[0] = 10.0
        c.connect()
    assert len(emu.sign_ins()) == 2


def test_close_signs_out(emu: Emulator) -> None:
    client = TableauClient(settings_for(emu))
    client.connect()
    client.close()
    assert emu.requests[-1].path.endswith("/auth/signout")


def test_connected_app_jwt_sign_in() -> None:
    app = {"client_id": "client-1", "secret_id": "secret-id-1", "secret_value": "k" * 43}
    with Emulator(site=SITE, users={"svc-relay": "unused"}, connected_app=app) as emu:
        settings = TableauSettings.model_validate(
            {
                "server_url": emu.url,
                "site": SITE,
                "connected_app": app | {"username": "svc-relay"},
            }
        )
        with TableauClient(settings) as client:
            assert client.items("workbook")


# -- resolution -----------------------------------------------------------------


def test_resolves_a_nested_path(emu: Emulator, client: TableauClient) -> None:
    item = client.resolve(Target(workbook="Finance/Regional/EMEA Revenue"))
    assert item.luid == emu.luid("workbook", "Finance/Regional/EMEA Revenue")
    assert item.path == "Finance/Regional/EMEA Revenue"


def test_same_name_in_two_projects_resolves_by_project(
    emu: Emulator, client: TableauClient
) -> None:
    finance = client.resolve(Target(workbook="Finance/Executive Overview"))
    assert finance.luid == emu.luid("workbook", "Finance/Executive Overview")
    with pytest.raises(TargetError, match="Sales/Executive Overview"):
        client.resolve(Target(workbook="Executive Overview"))


def test_unknown_path_names_the_candidates(client: TableauClient) -> None:
    expected = r"no workbook at 'Marketing/Executive Overview'.*Finance"
    with pytest.raises(TargetError, match=expected):
        client.resolve(Target(workbook="Marketing/Executive Overview"))


def test_resolves_a_luid(emu: Emulator, client: TableauClient) -> None:
    luid = emu.luid("datasource", "Finance/Revenue")
    assert client.resolve(Target(datasource_id=luid)).path == "Finance/Revenue"


def test_unknown_luid_is_not_found(client: TableauClient) -> None:
    with pytest.raises(NotFoundError):
        client.resolve(Target(workbook_id="00000000-0000-0000-0000-000000000000"))


def test_names_with_spaces_and_punctuation(emu: Emulator, client: TableauClient) -> None:
    emu.add_workbook("Sales/Q&A: Revenue, 2026 (draft) #1")
    item = client.resolve(Target(workbook="Sales/Q&A: Revenue, 2026 (draft) #1"))
    assert item.luid == emu.luid("workbook", "Sales/Q&A: Revenue, 2026 (draft) #1")


def test_resolution_is_cached(emu: Emulator, client: TableauClient) -> None:
    client.resolve(EXEC_OVERVIEW)
    before = len(emu.requests)
    client.resolve(EXEC_OVERVIEW)
    assert len(emu.requests) == before


def test_lists_more_than_one_page(emu: Emulator, client: TableauClient) -> None:
    for n in range(1, 1206):
        emu.add_workbook(f"Marketing/Bulk {n:04d}")
    assert len(client.items("workbook")) == 1205 + 5


# -- refresh and jobs -------------------------------------------------------------


def test_refresh_is_followed_to_success(emu: Emulator, client: TableauClient) -> None:
    item, job = client.refresh(EXEC_OVERVIEW)
    done = client.wait(job.id, timeout=30)
    assert done.succeeded
    assert done.finish_code == 0
    assert [r.item_id for r in emu.refresh_posts()] == [item.luid]


def test_failed_refresh_returns_tableau_notes(client: TableauClient) -> None:
    _, job = client.refresh(LEDGER)
    done = client.wait(job.id, timeout=30)
    assert not done.succeeded
    assert done.finish_code == 1
    assert done.notes


def test_cancelled_job(client: TableauClient) -> None:
    _, job = client.refresh(EXEC_OVERVIEW)
    client.cancel(job.id)
    done = client.wait(job.id, timeout=30)
    assert done.finish_code == 2
    assert done.outcome == "cancelled"


def test_incremental_refresh(client: TableauClient) -> None:
    _, job = client.refresh(Target(datasource="Finance/Revenue"), incremental=True)
    assert client.wait(job.id, timeout=30).succeeded


def test_duplicate_refresh_is_already_queued(client: TableauClient) -> None:
    client.refresh(EXEC_OVERVIEW)
    with pytest.raises(AlreadyQueuedError) as info:
        client.refresh(EXEC_OVERVIEW)
    assert info.value.code == "409093"


def test_refresh_not_allowed_is_permanent(client: TableauClient) -> None:
    with pytest.raises(PermanentTableauError) as info:
        client.refresh(Target(datasource="Sales/Live Inventory"))
    assert info.value.code == "409090"


def test_wait_gives_up_after_its_timeout(emu: Emulator) -> None:
    emu.job_duration = 60
    with TableauClient(settings_for(emu)) as client:
        _, job = client.refresh(EXEC_OVERVIEW)
        with pytest.raises(JobWaitTimeout):
            client.wait(job.id, timeout=0.5)


def test_wait_polls_on_the_workers_schedule(emu: Emulator) -> None:
    """`refresh --wait` spaces its polls as the worker does (`polling.next_poll`)."""
    now = [0.0]
    slept: list[float] = []
    emu.job_duration = 3600

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds
        if len(slept) == 3:
            emu.complete_job(job.id)

    with TableauClient(settings_for(emu), clock=lambda: now[0], sleep=sleep) as client:
        _, job = client.refresh(EXEC_OVERVIEW)
        done = client.wait(job.id, timeout=3600)

    assert done.succeeded
    assert slept == [next_poll(0.0), next_poll(1.0), next_poll(5.0)]  # 1, 4 and 4 s
    polls = [r for r in emu.requests if r.method == "GET" and r.path.endswith(f"/jobs/{job.id}")]
    assert len(polls) == 3


def test_wait_rides_out_transient_poll_errors(emu: Emulator, client: TableauClient) -> None:
    _, job = client.refresh(EXEC_OVERVIEW)
    emu.faults.fail(count=2, status=502)
    assert client.wait(job.id, timeout=30).succeeded


def test_wait_reports_progress(client: TableauClient) -> None:
    seen: list[str] = []
    _, job = client.refresh(EXEC_OVERVIEW)
    client.wait(job.id, timeout=30, on_progress=lambda j: seen.append(j.outcome))
    assert seen[-1] == "succeeded"


# -- faults ----------------------------------------------------------------------


def test_5xx_is_transient(emu: Emulator, client: TableauClient) -> None:
    client.connect()
    emu.faults.fail(count=1, status=500)
    with pytest.raises(TransientTableauError) as info:
        client.items("workbook")
    assert info.value.status == 500


def test_html_429_is_transient_with_retry_after(emu: Emulator, client: TableauClient) -> None:
    client.connect()
    emu.faults.rate_limit(count=1, retry_after=7)
    with pytest.raises(TransientTableauError) as info:
        client.refresh(EXEC_OVERVIEW)
    assert info.value.status == 429
    assert info.value.retry_after == 7.0


def test_slow_tableau_is_a_transient_timeout(emu: Emulator) -> None:
    with TableauClient(settings_for(emu, request_timeout=0.3)) as client:
        client.connect()
        emu.faults.latency = 1.0
        with pytest.raises(TransientTableauError, match="did not answer in time"):
            client.items("workbook")


def test_dropped_connection_is_transient(emu: Emulator, client: TableauClient) -> None:
    client.connect()
    emu.faults.drop(count=1)
    with pytest.raises(TransientTableauError, match="cannot reach Tableau"):
        client.items("workbook")


def test_unreachable_server_is_transient() -> None:
    settings = TableauSettings(
        server_url="http://127.0.0.1:9", token_name="n", token_secret="s", request_timeout=1
    )
    with TableauClient(settings) as client, pytest.raises(TransientTableauError):
        client.connect()


def test_no_secret_or_token_reaches_the_logs(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with TableauClient(settings_for(emu)) as client:
        _, job = client.refresh(EXEC_OVERVIEW)
        emu.invalidate_sessions()
        client.wait(job.id, timeout=30)
        token = client.call(lambda server: server.auth_token)
    assert PAT_SECRET not in caplog.text
    assert token not in caplog.text


def test_a_republished_item_is_resolved_again_once(emu: Emulator, client: TableauClient) -> None:
    """A cached LUID that answers 404 (deleted and published again) is looked up once more."""
    old = client.resolve(EXEC_OVERVIEW).luid
    new = emu.republish("workbook", "Sales/Executive Overview")
    item, job = client.refresh(EXEC_OVERVIEW)
    assert (item.luid, old != new) == (new, True)
    assert [r.status for r in emu.refresh_posts()] == [404, 202]
    assert client.wait(job.id, timeout=30).succeeded


def test_a_luid_target_that_answers_404_is_not_found(emu: Emulator, client: TableauClient) -> None:
    luid = emu.luid("workbook", "Sales/Pipeline Health")
    target = Target(workbook_id=luid)
    client.resolve(target)
    emu.republish("workbook", "Sales/Pipeline Health")
    with pytest.raises(NotFoundError):
        client.refresh(target)


def test_retry_after_pauses_every_call_not_just_the_refused_one(
    emu: Emulator, client: TableauClient
) -> None:
    client.connect()
    emu.faults.rate_limit(count=1, retry_after=30)
    with pytest.raises(TransientTableauError):
        client.items("workbook")
    sent = len(emu.requests)
    with pytest.raises(TransientTableauError, match="pause") as info:
        client.items("datasource")
    assert len(emu.requests) == sent  # Tableau was not called during the pause
    assert info.value.retry_after is not None
    assert 25 < info.value.retry_after <= 30
