"""The emulator over plain HTTP: answers, error codes, jobs, faults, the log, control endpoints."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

import pytest
import requests
from defusedxml.ElementTree import fromstring

from dbt_tableau_relay.emulators.tableau import Emulator, stable_luid

NS = {"t": "http://tableau.com/api"}
V = "/api/3.27"
REPO = Path(__file__).resolve().parents[2]
FIXED_LUID = "11111111-2222-3333-4444-555555555555"
APP = {"client_id": "client-123", "secret_id": "secret-456", "secret_value": "shh-hmac-key"}


# helpers


def xml(resp: requests.Response) -> Element:
    root: Element = fromstring(resp.content)
    return root


def child(element: Element, path: str) -> Element:
    found = element.find(path, NS)
    assert found is not None, f"no {path}"
    return found


def error_code(resp: requests.Response) -> str:
    if resp.headers.get("Content-Type", "").startswith("application/json"):
        return str(resp.json()["error"]["code"])
    found = xml(resp).find("t:error", NS)
    assert found is not None, resp.text
    return found.get("code", "")


def sign_in_body(attributes: str, site: str = "marketing") -> str:
    return (
        f"<tsRequest><credentials {attributes}>"
        f'<site contentUrl="{site}"/></credentials></tsRequest>'
    )


def pat_body(name: str, secret: str, site: str = "marketing") -> str:
    return sign_in_body(
        f'personalAccessTokenName="{name}" personalAccessTokenSecret="{secret}"', site
    )


def password_body(name: str, password: str) -> str:
    return sign_in_body(f'name="{name}" password="{password}"')


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(
    header: dict[str, Any] | None = None, secret: str = APP["secret_value"], **claims: Any
) -> str:
    head = {"alg": "HS256", "kid": APP["secret_id"], "iss": APP["client_id"]} | (header or {})
    body = {
        "iss": APP["client_id"],
        "aud": "tableau",
        "sub": "admin",
        "exp": time.time() + 300,
        "jti": str(uuid.uuid4()),
        "scp": ["tableau:content:read"],
    } | claims
    signing_input = f"{b64(json.dumps(head).encode())}.{b64(json.dumps(body).encode())}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def poll(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    """The first truthy result of `check`, polled every 20 ms."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
    return result


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def token_of(sign_in: requests.Response) -> str:
    assert sign_in.status_code == 200, sign_in.text
    credentials = xml(sign_in).find("t:credentials", NS)
    assert credentials is not None
    return credentials.get("token", "")


@pytest.fixture
def token(emulator: Emulator, http: requests.Session, pat: tuple[str, str]) -> str:
    return token_of(http.post(f"{emulator.url}{V}/auth/signin", data=pat_body(*pat)))


class Site:
    """Calls to the emulator's site with a session token."""

    def __init__(self, emulator: Emulator, http: requests.Session, token: str) -> None:
        self.base = f"{emulator.url}{V}/sites/{emulator.site_luid}"
        self.http = http
        self.headers = {"X-Tableau-Auth": token}

    def get(self, rest: str, **kwargs: Any) -> requests.Response:
        return self.http.get(
            self.base + rest, headers=self.headers | kwargs.pop("headers", {}), **kwargs
        )

    def post(self, rest: str, body: str = "<tsRequest />", **kwargs: Any) -> requests.Response:
        headers = self.headers | kwargs.pop("headers", {})
        return self.http.post(self.base + rest, data=body, headers=headers, **kwargs)

    def put(self, rest: str) -> requests.Response:
        return self.http.put(self.base + rest, headers=self.headers)

    def refresh(self, kind: str, luid: str, body: str = "<tsRequest />") -> requests.Response:
        return self.post(f"/{kind}s/{luid}/refresh", body)

    def job(self, job_id: str) -> Element:
        resp = self.get(f"/jobs/{job_id}")
        assert resp.status_code == 200, resp.text
        found = xml(resp).find("t:job", NS)
        assert found is not None
        return found

    def names(self, rest: str, **params: str) -> list[str]:
        resp = self.get(rest, params=params)
        assert resp.status_code == 200, resp.text
        return [e.get("name", "") for e in xml(resp).iterfind("t:*/*", NS)]


@pytest.fixture
def site(emulator: Emulator, http: requests.Session, token: str) -> Site:
    return Site(emulator, http, token)


def start_job(emulator: Emulator, site: Site, path: str = "Sales/Pipeline Health") -> str:
    """Refresh the workbook at `path`; the new job's id."""
    return new_job(site.refresh("workbook", emulator.luid("workbook", path))).get("id", "")


def new_job(resp: requests.Response) -> Element:
    assert resp.status_code == 202, resp.text
    found = xml(resp).find("t:job", NS)
    assert found is not None
    return found


# server info and sign-in


@pytest.mark.parametrize(
    "path", ["/api/2.4/serverInfo", "/api/3.27/serverinfo", "/api/3.5/SERVERINFO"]
)
def test_server_info_answers_any_version_and_case_without_auth(
    emulator: Emulator, http: requests.Session, path: str
) -> None:
    resp = http.get(emulator.url + path)

    assert resp.status_code == 200
    assert xml(resp).findtext("t:serverInfo/t:restApiVersion", namespaces=NS) == "3.27"
    assert xml(resp).find("t:serverInfo/t:productVersion", NS) is not None


def test_server_info_in_json(emulator: Emulator, http: requests.Session) -> None:
    resp = http.get(f"{emulator.url}{V}/serverInfo", headers={"Accept": "application/json"})

    info = resp.json()["serverInfo"]
    assert info["restApiVersion"] == "3.27"
    assert set(info["productVersion"]) == {"value", "build"}


@pytest.mark.parametrize("version", ["2.4", "3.27"])
def test_pat_sign_in_answers_token_site_user_and_expiry(
    emulator: Emulator, http: requests.Session, pat: tuple[str, str], version: str
) -> None:
    resp = http.post(f"{emulator.url}/api/{version}/auth/signin", data=pat_body(*pat))

    credentials = xml(resp).find("t:credentials", NS)
    assert credentials is not None
    assert credentials.get("token")
    assert re.fullmatch(r"\d+:\d\d:\d\d", credentials.get("estimatedTimeToExpiration", ""))
    assert child(credentials, "t:site").attrib == {
        "id": emulator.site_luid,
        "contentUrl": "marketing",
    }
    assert child(credentials, "t:user").get("id")


def test_json_pat_sign_in_answers_tableau_json(
    emulator: Emulator, http: requests.Session, pat: tuple[str, str]
) -> None:
    body = {
        "credentials": {
            "personalAccessTokenName": pat[0],
            "personalAccessTokenSecret": pat[1],
            "site": {"contentUrl": "marketing"},
        }
    }

    resp = http.post(
        f"{emulator.url}{V}/auth/signin", json=body, headers={"Accept": "application/json"}
    )

    credentials = resp.json()["credentials"]
    assert credentials["site"] == {"id": emulator.site_luid, "contentUrl": "marketing"}
    assert set(credentials) == {"site", "user", "token", "estimatedTimeToExpiration"}


def test_password_sign_in_has_no_pat_expiry(emulator: Emulator, http: requests.Session) -> None:
    resp = http.post(
        f"{emulator.url}{V}/auth/signin", data=password_body("admin", "admin-password")
    )

    assert resp.status_code == 200
    assert "estimatedTimeToExpiration" not in child(xml(resp), "t:credentials").attrib


@pytest.mark.parametrize(
    "body",
    [
        pat_body("relay-pat", "wrong-secret"),
        pat_body("other-pat", "s3cret-pat-value"),
        pat_body("relay-pat", "s3cret-pat-value", site="finance"),
        password_body("admin", "nope"),
        password_body("ghost", "x"),
    ],
    ids=["bad-secret", "unknown-pat", "other-site", "bad-password", "unknown-user"],
)
def test_wrong_credentials_answer_401001(
    emulator: Emulator, http: requests.Session, body: str
) -> None:
    resp = http.post(f"{emulator.url}{V}/auth/signin", data=body)

    assert resp.status_code == 401
    assert error_code(resp) == "401001"
    assert xml(resp).findtext("t:error/t:summary", namespaces=NS) == "Signin Error"


@pytest.mark.parametrize(
    "body",
    [
        "<tsRequest><credentials",
        sign_in_body(
            'name="admin" password="admin-password" '
            'personalAccessTokenName="relay-pat" personalAccessTokenSecret="s3cret-pat-value"'
        ),
        "",
    ],
    ids=["malformed", "pat-and-password", "empty"],
)
def test_bad_sign_in_request_answers_400000(
    emulator: Emulator, http: requests.Session, body: str
) -> None:
    resp = http.post(f"{emulator.url}{V}/auth/signin", data=body)

    assert (resp.status_code, error_code(resp)) == (400, "400000")


@pytest.fixture
def jwt_emulator() -> Iterator[Emulator]:
    with Emulator(site="marketing", connected_app=APP) as emu:
        yield emu


def jwt_sign_in(emu: Emulator, http: requests.Session, token: str) -> requests.Response:
    return http.post(f"{emu.url}{V}/auth/signin", data=sign_in_body(f'jwt="{token}"'))


def test_connected_app_jwt_sign_in_succeeds(jwt_emulator: Emulator, http: requests.Session) -> None:
    resp = jwt_sign_in(jwt_emulator, http, jwt())

    assert resp.status_code == 200


@pytest.mark.parametrize(
    "token",
    [
        jwt(secret="not-the-secret"),
        jwt(header={"kid": "other-secret-id"}),
        jwt(header={"iss": "other-client"}),
        jwt(header={"alg": "none"}),
        jwt(iss="other-client"),
        jwt(aud="someone-else"),
        jwt(exp=time.time() - 5),
        jwt(exp=time.time() + 3600),
        jwt(jti=""),
        jwt(sub="ghost"),
        jwt(scp=[]),
        "not.a.jwt",
    ],
    ids=[
        "signature",
        "kid",
        "header-iss",
        "alg",
        "iss",
        "aud",
        "expired",
        "exp-too-far",
        "no-jti",
        "unknown-sub",
        "no-scopes",
        "garbage",
    ],
)
def test_invalid_jwt_answers_401001(
    jwt_emulator: Emulator, http: requests.Session, token: str
) -> None:
    resp = jwt_sign_in(jwt_emulator, http, token)

    assert (resp.status_code, error_code(resp)) == (401, "401001")


def test_reused_jwt_id_answers_401001(jwt_emulator: Emulator, http: requests.Session) -> None:
    token = jwt()
    assert jwt_sign_in(jwt_emulator, http, token).status_code == 200

    resp = jwt_sign_in(jwt_emulator, http, token)

    assert error_code(resp) == "401001"


def test_jwt_without_a_configured_connected_app_answers_401001(
    emulator: Emulator, http: requests.Session
) -> None:
    resp = jwt_sign_in(emulator, http, jwt())

    assert error_code(resp) == "401001"


# sessions


def test_missing_token_answers_401000(emulator: Emulator, http: requests.Session) -> None:
    resp = http.get(f"{emulator.url}{V}/sites/{emulator.site_luid}/workbooks")

    assert (resp.status_code, error_code(resp)) == (401, "401000")


def test_unknown_token_answers_401002(emulator: Emulator, http: requests.Session) -> None:
    resp = Site(emulator, http, "not-a-token").get("/workbooks")

    assert (resp.status_code, error_code(resp)) == (401, "401002")


def test_new_pat_sign_in_ends_the_earlier_session_with_401002(
    emulator: Emulator, http: requests.Session, token: str, pat: tuple[str, str]
) -> None:
    http.post(f"{emulator.url}{V}/auth/signin", data=pat_body(*pat))

    resp = Site(emulator, http, token).get("/workbooks")

    assert (resp.status_code, error_code(resp)) == (401, "401002")


def test_password_sessions_survive_a_pat_sign_in(
    emulator: Emulator, http: requests.Session, pat: tuple[str, str]
) -> None:
    body = password_body("admin", "admin-password")
    password_token = token_of(http.post(f"{emulator.url}{V}/auth/signin", data=body))
    http.post(f"{emulator.url}{V}/auth/signin", data=pat_body(*pat))

    resp = Site(emulator, http, password_token).get("/workbooks")

    assert resp.status_code == 200


def test_sign_out_ends_the_session(emulator: Emulator, http: requests.Session, token: str) -> None:
    out = http.post(f"{emulator.url}{V}/auth/signout", headers={"X-Tableau-Auth": token})

    assert out.status_code == 204
    assert error_code(Site(emulator, http, token).get("/workbooks")) == "401002"


def test_session_expires_after_its_ttl(
    emulator: Emulator, http: requests.Session, pat: tuple[str, str]
) -> None:
    emulator.session_ttl = 0.2
    resp = http.post(f"{emulator.url}{V}/auth/signin", data=pat_body(*pat))
    site = Site(emulator, http, token_of(resp))
    assert site.get("/workbooks").status_code == 200

    poll(lambda: site.get("/workbooks").status_code == 401)

    assert error_code(site.get("/workbooks")) == "401002"


def test_invalidate_sessions_ends_every_session(emulator: Emulator, site: Site) -> None:
    emulator.invalidate_sessions()

    assert error_code(site.get("/projects")) == "401002"


# content


def test_demo_luids_are_uuid5_of_the_path(emulator: Emulator) -> None:
    luid = emulator.luid("workbook", "Sales/Executive Overview")

    name = "dbt-tableau-relay/emulator/workbook/Sales/Executive Overview"
    assert luid == str(uuid.uuid5(uuid.NAMESPACE_URL, name))
    assert luid == stable_luid("workbook", "Sales/Executive Overview")


def test_wrong_site_luid_answers_404000(
    emulator: Emulator, http: requests.Session, token: str
) -> None:
    resp = http.get(
        f"{emulator.url}{V}/sites/{uuid.uuid4()}/workbooks", headers={"X-Tableau-Auth": token}
    )

    assert (resp.status_code, error_code(resp)) == (404, "404000")


def test_workbook_by_id_carries_project_and_owner(emulator: Emulator, site: Site) -> None:
    luid = emulator.luid("workbook", "Finance/Regional/EMEA Revenue")

    workbook = xml(site.get(f"/workbooks/{luid}")).find("t:workbook", NS)

    assert workbook is not None
    assert workbook.get("name") == "EMEA Revenue"
    assert child(workbook, "t:project").attrib == {
        "id": emulator.luid("project", "Finance/Regional"),
        "name": "Regional",
    }
    assert child(workbook, "t:owner").get("id")


@pytest.mark.parametrize(
    ("rest", "code"),
    [("/workbooks/{id}", "404006"), ("/datasources/{id}", "404004"), ("/jobs/{id}", "404018")],
)
def test_missing_item_answers_its_404_code(site: Site, rest: str, code: str) -> None:
    resp = site.get(rest.format(id=uuid.uuid4()))

    assert (resp.status_code, error_code(resp)) == (404, code)


def test_unknown_resource_answers_404003(site: Site) -> None:
    resp = site.get("/flowz")

    assert (resp.status_code, error_code(resp)) == (404, "404003")


def test_wrong_method_answers_405000(site: Site) -> None:
    resp = site.post("/workbooks")

    assert (resp.status_code, error_code(resp)) == (405, "405000")


def test_only_nested_projects_carry_parent_project_id(emulator: Emulator, site: Site) -> None:
    projects = {
        p.get("name"): p.attrib
        for p in xml(site.get("/projects")).iterfind("t:projects/t:project", NS)
    }

    assert projects["Regional"]["parentProjectId"] == emulator.luid("project", "Finance")
    assert "parentProjectId" not in projects["Finance"]


def test_filter_by_name_and_project_name(site: Site) -> None:
    names = site.names("/workbooks", filter="name:eq:Executive Overview,projectName:eq:Finance")

    assert names == ["Executive Overview"]


def test_filter_value_with_spaces_and_punctuation(emulator: Emulator, site: Site) -> None:
    emulator.add_workbook("Sales/Q3: Revenue & Costs (EMEA) #1 + 50%")

    names = site.names("/workbooks", filter="name:eq:Q3: Revenue & Costs (EMEA) #1 + 50%")

    assert names == ["Q3: Revenue & Costs (EMEA) #1 + 50%"]


def test_filter_value_with_an_escaped_comma(emulator: Emulator, site: Site) -> None:
    emulator.add_datasource("Finance/Costs, Europe")

    names = site.names("/datasources", filter="name:eq:Costs%2C Europe,projectName:eq:Finance")

    assert names == ["Costs, Europe"]


def test_filter_in_list_and_wildcard(site: Site) -> None:
    assert site.names("/projects", filter="name:in:[Sales,Marketing]") == ["Sales", "Marketing"]
    assert site.names("/workbooks", filter="name:eq:*Overview") == ["Executive Overview"] * 2


def test_unknown_filter_field_answers_400065(site: Site) -> None:
    resp = site.get("/workbooks", params={"filter": "color:eq:red"})

    assert (resp.status_code, error_code(resp)) == (400, "400065")


def test_pagination_reports_total_available(emulator: Emulator, site: Site) -> None:
    for n in range(7):
        emulator.add_datasource(f"Marketing/Feed {n}")

    resp = site.get("/datasources", params={"pageSize": "5", "pageNumber": "3"})

    assert child(xml(resp), "t:pagination").attrib == {
        "pageNumber": "3",
        "pageSize": "5",
        "totalAvailable": "11",
    }
    assert len(xml(resp).findall("t:datasources/t:datasource", NS)) == 1


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"pageSize": "1001"}, 403, "403014"),
        ({"pageSize": "0"}, 400, "400007"),
        ({"pageSize": "ten"}, 400, "400007"),
        ({"pageNumber": "0"}, 400, "400006"),
        ({"pageNumber": "2"}, 400, "400006"),
    ],
)
def test_bad_paging_answers_tableau_codes(
    site: Site, params: dict[str, str], status: int, code: str
) -> None:
    resp = site.get("/workbooks", params=params)

    assert (resp.status_code, error_code(resp)) == (status, code)


def test_lists_in_json_follow_tableau_json(site: Site) -> None:
    resp = site.get("/workbooks", headers={"Accept": "application/json"})

    body = resp.json()
    assert body["pagination"] == {"pageNumber": "1", "pageSize": "100", "totalAvailable": "5"}
    first = body["workbooks"]["workbook"][0]
    assert set(first["project"]) == {"id", "name"}
    assert first["tags"] == {}


def test_empty_json_list_is_an_empty_object(site: Site) -> None:
    resp = site.get(
        "/workbooks", params={"filter": "name:eq:nothing"}, headers={"Accept": "application/json"}
    )

    assert resp.json()["workbooks"] == {}


def test_state_file_content_is_served(tmp_path: Path, http: requests.Session) -> None:
    state = {
        "projects": [{"name": "Ops"}, {"name": "Nightly", "parent": "Ops"}],
        "workbooks": [{"name": "Uptime", "project": "Ops/Nightly", "luid": FIXED_LUID}],
        "datasources": [{"path": "Ops/Events", "refreshable": False}],
    }
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state))

    with Emulator(content=path) as emu:
        assert emu.luid("workbook", "Ops/Nightly/Uptime") == FIXED_LUID
        assert emu.luid("project", "Ops/Nightly") == stable_luid("project", "Ops/Nightly")
        assert emu.content_state()["datasources"][0]["refreshable"] is False


def test_state_file_with_an_unknown_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"workbooks": [{"name": "X", "colour": "red"}]}))

    with pytest.raises(ValueError, match="colour"):
        Emulator(content=path)


def test_example_state_file_loads() -> None:
    emu = Emulator(content=REPO / "docs" / "emulator-state.example.json")

    path = "Sales/Live Inventory"
    assert emu.luid("datasource", path) == stable_luid("datasource", path)


# refresh and jobs


def test_refresh_answers_202_with_a_queued_job(emulator: Emulator, site: Site) -> None:
    luid = emulator.luid("workbook", "Sales/Executive Overview")

    job = new_job(site.refresh("workbook", luid))

    assert {k: job.get(k) for k in ("mode", "type")} == {
        "mode": "Asynchronous",
        "type": "RefreshExtract",
    }
    assert job.get("createdAt")
    assert child(job, "t:extractRefreshJob/t:workbook").attrib == {
        "id": luid,
        "name": "Executive Overview",
    }


@pytest.mark.parametrize(
    ("body", "content_type", "incremental"),
    [
        ("", "text/xml", False),
        ("{}", "application/json", False),
        ('<tsRequest><extractRefresh incremental="true"/></tsRequest>', "text/xml", True),
        ('<tsRequest><extractRefresh incremental="false"/></tsRequest>', "text/xml", False),
        ('{"extractRefresh": {"incremental": true}}', "application/json", True),
    ],
)
def test_refresh_accepts_every_body_form(
    emulator: Emulator, site: Site, body: str, content_type: str, incremental: bool
) -> None:
    luid = emulator.luid("datasource", "Sales/Orders")

    resp = site.post(f"/datasources/{luid}/refresh", body, headers={"Content-Type": content_type})

    assert resp.status_code == 202, resp.text
    assert [j.incremental for j in emulator.jobs] == [incremental]


def test_refresh_in_json_answers_a_json_job(emulator: Emulator, site: Site) -> None:
    luid = emulator.luid("datasource", "Sales/Orders")

    resp = site.post(f"/datasources/{luid}/refresh", "{}", headers={"Accept": "application/json"})

    job = resp.json()["job"]
    assert job["extractRefreshJob"]["datasource"] == {"id": luid, "name": "Orders"}
    assert job["type"] == "RefreshExtract"


def test_malformed_refresh_body_answers_400000(emulator: Emulator, site: Site) -> None:
    resp = site.refresh(
        "workbook", emulator.luid("workbook", "Sales/Pipeline Health"), "<tsRequest"
    )

    assert (resp.status_code, error_code(resp)) == (400, "400000")


def test_refresh_while_queued_answers_409093(emulator: Emulator, site: Site) -> None:
    luid = emulator.luid("workbook", "Sales/Pipeline Health")
    new_job(site.refresh("workbook", luid))

    resp = site.refresh("workbook", luid)

    assert (resp.status_code, error_code(resp)) == (409, "409093")
    assert "Not queuing a duplicate" in resp.text


def test_refresh_is_accepted_again_once_the_job_completed(emulator: Emulator, site: Site) -> None:
    luid = emulator.luid("workbook", "Sales/Pipeline Health")
    job_id = new_job(site.refresh("workbook", luid)).get("id", "")
    poll(lambda: site.job(job_id).get("completedAt"))

    assert site.refresh("workbook", luid).status_code == 202


def test_refresh_of_a_live_datasource_answers_409090(emulator: Emulator, site: Site) -> None:
    resp = site.refresh("datasource", emulator.luid("datasource", "Sales/Live Inventory"))

    assert (resp.status_code, error_code(resp)) == (409, "409090")
    assert emulator.jobs == ()


def test_job_moves_from_queued_to_running_to_succeeded(emulator: Emulator, site: Site) -> None:
    emulator.job_duration = 1.2
    job_id = start_job(emulator, site)

    queued = site.job(job_id)
    running = poll(lambda: (j := site.job(job_id)).get("startedAt") and j)
    done = poll(lambda: (j := site.job(job_id)).get("completedAt") and j)

    assert (queued.get("startedAt"), queued.get("finishCode")) == (None, None)
    assert queued.get("progress") == "0"
    assert (running.get("completedAt"), running.get("finishCode")) == (None, None)
    assert (done.get("finishCode"), done.get("progress")) == ("0", "100")


def test_job_fails_with_the_configured_notes(emulator: Emulator, site: Site) -> None:
    luid = emulator.luid("workbook", "Marketing/Campaign Performance")
    emulator.set_refresh_outcome(luid, finish_code=1, notes="Extract too large")
    job_id = new_job(site.refresh("workbook", luid)).get("id", "")

    done = poll(lambda: (j := site.job(job_id)).get("completedAt") and j)

    assert done.get("finishCode") == "1"
    assert done.findtext("t:extractRefreshJob/t:notes", namespaces=NS) == "Extract too large"


def test_cancel_completes_the_job_with_finish_code_2(emulator: Emulator, site: Site) -> None:
    emulator.job_duration = 30
    job_id = start_job(emulator, site)

    resp = site.put(f"/jobs/{job_id}")

    assert resp.status_code == 200
    job = site.job(job_id)
    assert (job.get("finishCode"), bool(job.get("completedAt"))) == ("2", True)


def test_cancelling_a_finished_job_answers_403091(emulator: Emulator, site: Site) -> None:
    emulator.job_duration = 30
    job_id = start_job(emulator, site)
    site.put(f"/jobs/{job_id}")

    resp = site.put(f"/jobs/{job_id}")

    assert (resp.status_code, error_code(resp)) == (403, "403091")


def test_job_list_filters_by_status(emulator: Emulator, site: Site) -> None:
    emulator.job_duration = 30
    start_job(emulator, site)

    resp = site.get("/jobs", params={"filter": "status:eq:Pending"})

    assert [
        j.get("jobType") for j in xml(resp).iterfind("t:backgroundJobs/t:backgroundJob", NS)
    ] == ["refresh_extracts"]


def test_concurrent_refreshes_of_one_item_queue_exactly_one(emulator: Emulator, site: Site) -> None:
    luid = emulator.luid("datasource", "Finance/Revenue")

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: _refresh_status(emulator, site.headers, luid), range(8)))

    assert sorted(statuses) == [202] + [409] * 7


def _refresh_status(emulator: Emulator, headers: dict[str, str], luid: str) -> int:
    url = f"{emulator.url}{V}/sites/{emulator.site_luid}/datasources/{luid}/refresh"
    with requests.Session() as own:
        return own.post(url, data="<tsRequest />", headers=headers).status_code


# faults


def test_fail_answers_503_with_a_tableau_error_then_recovers(
    emulator: Emulator, site: Site
) -> None:
    emulator.faults.fail(count=2)

    statuses = [site.get("/projects").status_code for _ in range(3)]

    assert statuses == [503, 503, 200]


def test_fail_body_is_a_tableau_error_in_the_asked_format(emulator: Emulator, site: Site) -> None:
    emulator.faults.fail(count=2, status=500)

    as_xml = site.get("/projects")
    as_json = site.get("/projects", headers={"Accept": "application/json"})

    assert error_code(as_xml) == "500000"
    assert as_json.json()["error"]["code"] == "500000"


def test_fail_for_seconds_ends_by_itself(emulator: Emulator, site: Site) -> None:
    emulator.faults.fail(seconds=0.3, status=502)

    assert site.get("/projects").status_code == 502
    assert poll(lambda: site.get("/projects").status_code == 200)


def test_processed_failure_still_queues_the_refresh(emulator: Emulator, site: Site) -> None:
    luid = emulator.luid("workbook", "Sales/Pipeline Health")
    emulator.faults.fail(count=1, status=504, processed=True)

    first = site.refresh("workbook", luid)
    retry = site.refresh("workbook", luid)

    assert (first.status_code, len(emulator.jobs)) == (504, 1)
    assert error_code(retry) == "409093"


def test_rate_limit_answers_html_429_with_retry_after(emulator: Emulator, site: Site) -> None:
    emulator.faults.rate_limit(count=1, retry_after=2)

    resp = site.get("/workbooks")

    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "2"
    assert resp.headers["Content-Type"].startswith("text/html")
    assert resp.text.lstrip().startswith("<html>")
    assert site.get("/workbooks").status_code == 200


def test_latency_delays_every_api_call(emulator: Emulator, site: Site) -> None:
    emulator.faults.latency = 0.2

    started = time.monotonic()
    site.get("/projects")

    assert time.monotonic() - started >= 0.2


def test_dropped_connection_raises_connection_error(emulator: Emulator, site: Site) -> None:
    emulator.faults.drop(count=1)

    with pytest.raises(requests.ConnectionError):
        site.get("/projects")
    assert site.get("/projects").status_code == 200
    assert emulator.requests[-2].status == 0


def test_faults_never_touch_control_endpoints(emulator: Emulator, http: requests.Session) -> None:
    emulator.faults.fail(count=5)
    emulator.faults.drop(count=5)

    resp = http.get(f"{emulator.url}/_emulator/requests")

    assert resp.status_code == 200


# request log


def test_log_records_method_path_query_status_and_item(emulator: Emulator, site: Site) -> None:
    luid = emulator.luid("workbook", "Sales/Pipeline Health")
    site.get("/workbooks", params={"pageSize": "10"})
    site.refresh("workbook", luid)

    listing, refresh = emulator.requests[-2:]

    assert (listing.method, listing.query) == ("GET", {"pageSize": "10"})
    assert (listing.status, listing.had_token) == (200, True)
    assert (refresh.item_id, refresh.status) == (luid, 202)
    assert emulator.refresh_posts(luid) == [refresh]
    assert emulator.refresh_posts(emulator.luid("workbook", "Sales/Executive Overview")) == []


def test_log_never_holds_tokens_or_secrets(
    emulator: Emulator, http: requests.Session, site: Site, token: str, pat: tuple[str, str]
) -> None:
    site.get("/projects")
    over_http = http.get(f"{emulator.url}/_emulator/requests").text

    everything = repr(emulator.requests) + over_http

    assert token not in everything
    assert token.split("|")[0] not in everything
    assert pat[1] not in everything
    assert len(emulator.sign_ins()) == 1


# control endpoints and lifecycle


def test_control_endpoints_set_faults_and_reset(
    emulator: Emulator, http: requests.Session, site: Site
) -> None:
    control = f"{emulator.url}/_emulator"
    http.post(f"{control}/faults", json={"fail": {"count": 1, "status": 502}})
    assert site.get("/projects").status_code == 502

    luids = http.get(f"{control}/luids").json()
    assert http.post(f"{control}/reset").status_code == 200

    path = "Finance/Executive Overview"
    assert luids["workbooks"][path] == emulator.luid("workbook", path)
    assert http.get(f"{control}/requests").json() == []
    assert error_code(site.get("/projects")) == "401002"  # reset ends sessions


def test_control_endpoints_change_content_and_outcomes(
    emulator: Emulator, http: requests.Session, site: Site
) -> None:
    control = f"{emulator.url}/_emulator"
    added = http.post(f"{control}/content", json={"workbooks": [{"path": "Sales/Forecast"}]}).json()
    luid = added["workbooks"]["Sales/Forecast"]
    http.post(f"{control}/refresh-outcome", json={"luid": luid, "finish_code": 1, "notes": "boom"})
    http.post(f"{control}/settings", json={"job_duration": 0.05})

    job_id = new_job(site.refresh("workbook", luid)).get("id", "")
    done = poll(lambda: (j := site.job(job_id)).get("completedAt") and j)

    assert done.get("finishCode") == "1"
    assert http.get(f"{control}/jobs").json()[0]["notes"] == "boom"


def test_control_invalidate_sessions(
    emulator: Emulator, http: requests.Session, site: Site
) -> None:
    http.post(f"{emulator.url}/_emulator/invalidate-sessions")

    assert error_code(site.get("/projects")) == "401002"


def test_bad_control_calls_answer_400_and_404(emulator: Emulator, http: requests.Session) -> None:
    control = f"{emulator.url}/_emulator"

    assert http.post(f"{control}/faults", json={"fail": {"colour": 1}}).status_code == 400
    assert http.get(f"{control}/nothing").status_code == 404


def test_stop_closes_keep_alive_connections(http: requests.Session) -> None:
    emu = Emulator()
    url = emu.start()
    assert http.get(f"{url}{V}/serverInfo").status_code == 200

    emu.stop()

    with pytest.raises(requests.ConnectionError):
        http.get(f"{url}{V}/serverInfo", timeout=2)


def test_run_emulator_serves_until_interrupted(tmp_path: Path) -> None:
    script = (
        # A runner started in the background (`make test &`) hands SIGINT down
        # ignored, and Python keeps it so: restore Ctrl-C as a terminal gives it.
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from dbt_tableau_relay.emulators.tableau import run_emulator\n"
        "run_emulator(0, site='marketing', ready=lambda emu: print(emu.url, flush=True))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        url = (proc.stdout.readline() if proc.stdout else "").strip()
        with requests.Session() as http:
            luids = http.get(f"{url}/_emulator/luids").json()
            assert luids["site"] == stable_luid_site("marketing")
            assert http.get(f"{url}{V}/serverInfo").status_code == 200
        proc.send_signal(2)  # SIGINT, as Ctrl-C
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


def stable_luid_site(site: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"dbt-tableau-relay/emulator/site/{site}"))
