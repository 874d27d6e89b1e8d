"""The emulator as tableauserverclient 0.42 sees it: TSC must parse every answer as from Tableau."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
import tableauserverclient as TSC

from dbt_tableau_relay.emulators.tableau import Emulator

SITE = "marketing"
APP = {"client_id": "client-123", "secret_id": "secret-456", "secret_value": "shh-hmac-key"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(user: str = "admin", **overrides: object) -> str:
    header = {"alg": "HS256", "typ": "JWT", "kid": APP["secret_id"], "iss": APP["client_id"]}
    claims = {
        "iss": APP["client_id"],
        "aud": "tableau",
        "sub": user,
        "exp": int(time.time()) + 300,
        "jti": str(uuid.uuid4()),
        "scp": ["tableau:content:read", "tableau:tasks:run"],
    } | overrides
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(APP["secret_value"].encode(), signing_input.encode(), hashlib.sha256)
    return f"{signing_input}.{_b64(signature.digest())}"


def test_pat_sign_in_negotiates_api_version_3_27(
    emulator: Emulator, tsc_server: TSC.Server
) -> None:
    assert tsc_server.version == "3.27"
    assert tsc_server.site_id == emulator.site_luid
    assert [r.path for r in emulator.sign_ins()] == ["/api/2.4/auth/signin"]


def test_pager_walks_every_page_of_a_filtered_list(
    emulator: Emulator, tsc_server: TSC.Server
) -> None:
    for n in range(250):
        emulator.add_workbook(f"Sales/Bulk {n:04d}")
    options = TSC.RequestOptions(pagesize=100)
    options.filter.add(
        TSC.Filter(
            TSC.RequestOptions.Field.ProjectName, TSC.RequestOptions.Operator.Equals, "Sales"
        )
    )

    names = [wb.name for wb in TSC.Pager(tsc_server.workbooks, options)]

    assert len(names) == 252  # the 250 added and the two demo workbooks in Sales
    assert len(set(names)) == 252
    pages = [r.query.get("pageNumber") for r in emulator.requests if r.path.endswith("/workbooks")]
    assert pages == ["1", "2", "3"]


def test_filter_tells_apart_workbooks_sharing_a_name(
    emulator: Emulator, tsc_server: TSC.Server
) -> None:
    found = list(tsc_server.workbooks.filter(name="Executive Overview", project_name="Finance"))

    assert [(wb.id, wb.project_name) for wb in found] == [
        (emulator.luid("workbook", "Finance/Executive Overview"), "Finance")
    ]


def test_projects_carry_parent_ids(emulator: Emulator, tsc_server: TSC.Server) -> None:
    projects, pagination = tsc_server.projects.get()

    parents = {p.name: p.parent_id for p in projects}
    assert pagination.total_available == 5
    assert parents["Regional"] == emulator.luid("project", "Finance")
    assert parents["Finance"] is None


def test_datasources_report_which_have_extracts(tsc_server: TSC.Server) -> None:
    datasources, _ = tsc_server.datasources.get()

    assert {d.name: d.has_extracts for d in datasources} == {
        "Revenue": True,
        "Orders": True,
        "Live Inventory": False,
        "Legacy Ledger": True,
    }


def test_workbook_refresh_job_completes_successfully(
    emulator: Emulator, tsc_server: TSC.Server
) -> None:
    luid = emulator.luid("workbook", "Finance/Regional/EMEA Revenue")

    job = tsc_server.workbooks.refresh(luid)
    assert job is not None
    assert (job.type, job.mode, job.workbook_id) == ("RefreshExtract", "Asynchronous", luid)
    done = tsc_server.jobs.wait_for_job(job, timeout=10)

    assert done.finish_code == 0
    assert done.completed_at is not None
    assert done.started_at is not None


def test_failing_datasource_refresh_raises_job_failed_with_notes(
    emulator: Emulator, tsc_server: TSC.Server
) -> None:
    job = tsc_server.datasources.refresh(emulator.luid("datasource", "Finance/Legacy Ledger"))
    assert job is not None

    with pytest.raises(TSC.JobFailedException) as failure:
        tsc_server.jobs.wait_for_job(job, timeout=10)

    assert failure.value.job.finish_code == 1
    assert "Login failed" in failure.value.notes[0]


def test_duplicate_refresh_returns_none_after_a_409(
    emulator: Emulator, tsc_server: TSC.Server
) -> None:
    luid = emulator.luid("datasource", "Finance/Revenue")

    first = tsc_server.datasources.refresh(luid)
    second = tsc_server.datasources.refresh(luid)

    assert first is not None
    assert second is None
    assert [r.status for r in emulator.refresh_posts(luid)] == [202, 409]


def test_refresh_of_a_live_datasource_raises_409090(
    emulator: Emulator, tsc_server: TSC.Server
) -> None:
    with pytest.raises(TSC.ServerResponseError) as refused:
        tsc_server.datasources.refresh(emulator.luid("datasource", "Sales/Live Inventory"))

    assert refused.value.code == "409090"


def test_second_sign_in_with_the_same_pat_ends_the_first_session(
    new_tsc_server: Callable[[], TSC.Server],
) -> None:
    first = new_tsc_server()
    second = new_tsc_server()

    with pytest.raises(TSC.FailedSignInError) as ended:
        first.workbooks.get()

    assert ended.value.code == "401002"
    assert second.workbooks.get()[1].total_available == 5


def test_cancelled_job_raises_job_cancelled(emulator: Emulator, tsc_server: TSC.Server) -> None:
    emulator.job_duration = 30
    job = tsc_server.workbooks.refresh(emulator.luid("workbook", "Sales/Pipeline Health"))
    assert job is not None

    tsc_server.jobs.cancel(job.id)

    with pytest.raises(TSC.JobCancelledException):
        tsc_server.jobs.wait_for_job(job, timeout=10)


def test_incremental_refresh_is_sent_and_recorded(
    emulator: Emulator, tsc_server: TSC.Server
) -> None:
    job = tsc_server.workbooks.refresh(
        emulator.luid("workbook", "Marketing/Campaign Performance"), incremental=True
    )
    assert job is not None

    assert [j.incremental for j in emulator.jobs] == [True]


def test_username_password_sign_in(emulator: Emulator) -> None:
    with TSC.Server(emulator.url, use_server_version=True) as server:
        server.auth.sign_in(TSC.TableauAuth("admin", "admin-password", site_id=SITE))

        assert server.workbooks.get()[1].total_available == 5


def test_wrong_pat_secret_raises_failed_sign_in_401001(
    emulator: Emulator, pat: tuple[str, str]
) -> None:
    with TSC.Server(emulator.url) as server, pytest.raises(TSC.FailedSignInError) as refused:
        server.auth.sign_in(TSC.PersonalAccessTokenAuth(pat[0], "wrong", site_id=SITE))

    assert refused.value.code == "401001"


def test_connected_app_jwt_sign_in() -> None:
    with (
        Emulator(site=SITE, connected_app=APP) as emu,
        TSC.Server(emu.url, use_server_version=True) as server,
    ):
        server.auth.sign_in(TSC.JWTAuth(make_jwt(), site_id=SITE))

        assert server.projects.get()[1].total_available == 5


# -- Query Jobs: what a relay reads to find a refresh it did not record -------------


def _jobs(tsc_server: TSC.Server, *clauses: tuple[str, str, object]) -> list[TSC.BackgroundJobItem]:
    options = TSC.RequestOptions(pagesize=1000)
    options.filter.update(TSC.Filter(field, op, value) for field, op, value in clauses)
    listed, _ = tsc_server.jobs.get(options)
    return list(listed)


def test_query_jobs_titles_a_refresh_with_its_items_name_and_kind(
    emulator: Emulator, tsc_server: TSC.Server
) -> None:
    emulator.job_duration = 3600
    tsc_server.workbooks.refresh(emulator.luid("workbook", "Sales/Executive Overview"))
    tsc_server.datasources.refresh(emulator.luid("datasource", "Finance/Revenue"), incremental=True)

    listed = {(j.title, j.subtitle, j.type, j.status) for j in _jobs(tsc_server)}

    assert listed == {
        ("Executive Overview", "Workbook", "refresh_extracts", "Pending"),
        ("Revenue", "Data Source", "increment_extracts", "Pending"),
    }


def test_query_jobs_filters_on_created_at_title_and_job_type(
    emulator: Emulator, tsc_server: TSC.Server
) -> None:
    emulator.job_duration = 3600
    job = tsc_server.workbooks.refresh(emulator.luid("workbook", "Sales/Executive Overview"))
    tsc_server.workbooks.refresh(emulator.luid("workbook", "Sales/Pipeline Health"))
    op = TSC.RequestOptions.Operator
    created = job.created_at
    before, after = created - timedelta(seconds=1), created + timedelta(hours=1)

    mine = _jobs(
        tsc_server,
        ("createdAt", op.GreaterThan, before),
        ("jobType", op.Equals, "refresh_extracts"),
        ("title", op.Equals, "Executive Overview"),
    )

    assert [j.id for j in mine] == [job.id]
    assert _jobs(tsc_server, ("createdAt", op.GreaterThan, after)) == []
    assert len(_jobs(tsc_server, ("createdAt", op.GreaterThanOrEqual, created))) == 2
    assert _jobs(tsc_server, ("jobType", op.Equals, "increment_extracts")) == []


def test_query_job_names_the_refreshed_items_luid(
    emulator: Emulator, tsc_server: TSC.Server
) -> None:
    luid = emulator.luid("datasource", "Finance/Revenue")
    job = tsc_server.datasources.refresh(luid)

    assert tsc_server.jobs.get_by_id(job.id).datasource_id == luid


def test_query_jobs_is_refused_to_a_pat_that_is_no_site_administrator(
    emulator: Emulator, tsc_server: TSC.Server
) -> None:
    emulator.pat_admin = False

    with pytest.raises(TSC.ServerResponseError) as refused:
        tsc_server.jobs.get()

    assert refused.value.code.startswith("403")
    assert [r.status for r in emulator.requests if r.path.endswith("/jobs")] == [403]


def test_complete_job_ends_a_running_refresh_now(
    emulator: Emulator, tsc_server: TSC.Server
) -> None:
    emulator.job_duration = 3600
    job = tsc_server.workbooks.refresh(emulator.luid("workbook", "Sales/Executive Overview"))

    assert emulator.complete_job(job.id) is not None

    done = tsc_server.jobs.get_by_id(job.id)
    assert (done.finish_code, done.completed_at is not None) == (0, True)
    assert emulator.complete_job(job.id) is None  # it has ended already
