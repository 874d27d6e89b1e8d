"""The admin API, the dashboard's routes and their access rule, over real HTTP.

The relay runs under uvicorn with its worker against the emulator, on a
SQLite file; events are posted as dbt Cloud posts them.
"""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from admin_harness import LEGACY_LEDGER, TOKEN, admin_relay, client, emulator
from fastapi import FastAPI
from harness import EXEC, PAT_SECRET, SECRET, Relay, relay_settings

from dbt_tableau_relay.app import create_app
from dbt_tableau_relay.emulators.tableau import Emulator
from dbt_tableau_relay.samples import sample_event
from dbt_tableau_relay.states import JOB_STATES

Start = Callable[..., Relay]


@pytest.fixture
def tableau() -> Iterator[Emulator]:
    with emulator() as tableau:
        yield tableau


@pytest.fixture
def start(tableau: Emulator, tmp_path: Path) -> Iterator[Start]:
    """Start a relay on one SQLite file: `start(token=..., listen=..., worker=...)`."""
    with ExitStack() as stack:

        def started(**options: Any) -> Relay:
            database_url = f"sqlite:///{tmp_path / 'relay.db'}"
            return stack.enter_context(admin_relay(tableau, database_url, **options))

        yield started


@pytest.fixture
def relay(start: Start) -> Relay:
    """Open: no token, listening on loopback only."""
    return start()


@pytest.fixture
def api(relay: Relay) -> Iterator[httpx.Client]:
    with client(relay) as api:
        yield api


def settled(relay: Relay, *job_ids: int) -> dict[int, str]:
    """Wait for every job (or those given) to reach a final state; id -> state."""
    relay.settled_jobs()
    states = {j.id: j.state for j in relay.jobs()}
    return {i: states[i] for i in job_ids} if job_ids else states


def failed_ledger_job(relay: Relay) -> int:
    relay.post(sample_event("completed", job_id=303, run_id=12345))
    [(job_id, state)] = settled(relay).items()
    assert state == "failed"
    return job_id


# -- the API -------------------------------------------------------------------


def test_summary_counts_events_by_outcome_and_jobs_by_state(
    relay: Relay, api: httpx.Client
) -> None:
    for job_id in (101, 303, 999):
        relay.post(sample_event("completed", job_id=job_id))
    settled(relay)
    answer = api.get("/api/summary")
    assert answer.status_code == 200
    assert answer.json() == {
        "events": {"queued": 2, "ignored": 1, "invalid": 0},
        "jobs": {
            "queued": 0,
            "sending": 0,
            "following": 0,
            "succeeded": 1,
            "failed": 1,
            "dead": 0,
            "merged": 0,
        },
    }


def test_events_are_listed_newest_first_a_page_at_a_time(relay: Relay, api: httpx.Client) -> None:
    for run_id in range(5):
        relay.post(sample_event("completed", job_id=999, run_id=run_id))
    runs = [e["run_id"] for e in api.get("/api/events").json()]
    assert runs == ["4", "3", "2", "1", "0"]
    page = api.get("/api/events", params={"limit": 2, "offset": 1}).json()
    assert [e["run_id"] for e in page] == ["3", "2"]
    assert page[0]["outcome"] == "ignored"
    assert "body" not in page[0]


def test_an_event_shows_its_body_and_its_refresh_jobs(relay: Relay, api: httpx.Client) -> None:
    body = sample_event("completed", job_id=202)
    relay.post(body)
    settled(relay)
    [summary] = api.get("/api/events").json()
    event = api.get(f"/api/events/{summary['id']}").json()
    assert event["body"] == body.decode()
    assert (event["job_id"], event["event_type"], event["refreshes"]) == (
        "202",
        "job.run.completed",
        2,
    )
    assert sorted(j["target_ref"] for j in event["jobs"]) == [
        "Finance/Executive Overview",
        "Finance/Revenue",
    ]
    assert {j["state"] for j in event["jobs"]} == {"succeeded"}


def test_jobs_are_listed_by_state_and_limit(relay: Relay, api: httpx.Client) -> None:
    for job_id in (101, 202, 303):
        relay.post(sample_event("completed", job_id=job_id))
    settled(relay)
    assert [j["target_ref"] for j in api.get("/api/jobs?state=failed").json()] == [LEGACY_LEDGER]
    assert len(api.get("/api/jobs?state=succeeded").json()) == 3
    newest = api.get("/api/jobs?limit=1").json()
    assert [j["id"] for j in newest] == [max(j.id for j in relay.jobs())]


def test_a_job_shows_its_attempts_and_events(relay: Relay, api: httpx.Client) -> None:
    relay.post(sample_event("completed", job_id=101))
    [job_id] = settled(relay)
    job = api.get(f"/api/jobs/{job_id}").json()
    assert (job["state"], job["finish_code"], job["target_ref"]) == ("succeeded", 0, EXEC)
    assert [a["outcome"] for a in job["attempt_log"]] == ["accepted", "succeeded"]
    assert job["attempt_log"][0]["tableau_job_id"] == job["tableau_job_id"]
    assert [e["job_id"] for e in job["events"]] == ["101"]
    assert job["replayed_as"] is None


def test_times_are_iso_8601_in_utc(relay: Relay, api: httpx.Client) -> None:
    relay.post(sample_event("completed", job_id=101))
    [job_id] = settled(relay)
    job = api.get(f"/api/jobs/{job_id}").json()
    for name in ("created_at", "sent_at", "finished_at", "last_event_at"):
        assert job[name].endswith("Z"), job[name]
        assert datetime.fromisoformat(job[name]).utcoffset().total_seconds() == 0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("method", "path", "detail"),
    [
        ("GET", "/api/events/404", "event 404 does not exist"),
        ("GET", "/api/jobs/404", "refresh job 404 does not exist"),
        ("POST", "/api/jobs/404/replay", "refresh job 404 does not exist"),
    ],
)
def test_unknown_ids_are_404s_that_say_what_is_missing(
    api: httpx.Client, method: str, path: str, detail: str
) -> None:
    answer = api.request(method, path)
    assert answer.status_code == 404
    assert answer.json() == {"detail": detail}


@pytest.mark.parametrize(
    "path",
    ["/api/jobs/99999999999999999999", "/api/events/0", "/api/events?offset=99999999999999999999"],
)
def test_a_number_no_row_can_have_is_refused_not_a_server_error(
    api: httpx.Client, path: str
) -> None:
    assert api.get(path).status_code == 422


def test_an_unknown_state_is_refused_with_the_valid_ones(api: httpx.Client) -> None:
    answer = api.get("/api/jobs?state=exploded")
    assert answer.status_code == 422
    assert all(f"'{state}'" in answer.text for state in JOB_STATES)


def test_the_openapi_schema_documents_the_answers(api: httpx.Client) -> None:
    schema = api.get("/openapi.json").json()
    for path in ("/api/summary", "/api/events", "/api/events/{event_pk}", "/api/jobs/{job_id}"):
        assert path in schema["paths"]
    models = schema["components"]["schemas"]
    assert {"Summary", "EventDetail", "JobDetail", "Replayed"} <= models.keys()
    replay = schema["paths"]["/api/jobs/{job_id}/replay"]["post"]["responses"]
    assert {"202", "404", "409"} <= replay.keys()
    assert "/" not in schema["paths"]  # the dashboard is a page, not API


# -- replay --------------------------------------------------------------------


def test_a_failed_job_replayed_refreshes_its_item_again(relay: Relay, api: httpx.Client) -> None:
    old_id = failed_ledger_job(relay)
    relay.tableau.set_refresh_outcome(relay.tableau.luid("datasource", LEGACY_LEDGER), 0)
    answer = api.post(f"/api/jobs/{old_id}/replay")
    assert answer.status_code == 202
    new_id = answer.json()["replayed_as"]
    assert answer.json() == {"job_id": old_id, "replayed_as": new_id}
    assert settled(relay, old_id, new_id) == {old_id: "failed", new_id: "succeeded"}
    old, new = api.get(f"/api/jobs/{old_id}").json(), api.get(f"/api/jobs/{new_id}").json()
    assert old["replayed_as"] == new_id
    assert old["attempt_log"][-1]["outcome"] == "replayed"
    assert old["attempt_log"][-1]["message"] == f"replayed as refresh job {new_id}"
    assert new["events"] == old["events"]
    assert (new["rule_name"], new["last_event_at"]) == (old["rule_name"], old["last_event_at"])
    assert new["finish_code"] == 0


def test_a_dead_job_replayed_once_tableau_is_back(relay: Relay, api: httpx.Client) -> None:
    relay.tableau.faults.fail(seconds=60, status=503)
    relay.post(sample_event("completed", job_id=101))
    [(old_id, state)] = settled(relay).items()
    assert state == "dead"
    relay.tableau.faults.clear()
    new_id = api.post(f"/api/jobs/{old_id}/replay").json()["replayed_as"]
    assert settled(relay, old_id, new_id) == {old_id: "dead", new_id: "succeeded"}


def test_a_succeeded_job_is_not_replayed(relay: Relay, api: httpx.Client) -> None:
    relay.post(sample_event("completed", job_id=101))
    [job_id] = settled(relay)
    answer = api.post(f"/api/jobs/{job_id}/replay")
    assert answer.status_code == 409
    assert answer.json() == {
        "detail": f"refresh job {job_id} is succeeded: only failed or dead jobs can be replayed"
    }
    assert len(relay.jobs()) == 1


def test_a_replay_joins_the_items_queued_job(tableau: Emulator, tmp_path: Path) -> None:
    """The relay stops with a failed job; restarted without a worker, a new event waits."""
    database_url = f"sqlite:///{tmp_path / 'relay.db'}"
    with admin_relay(tableau, database_url) as relay:
        old_id = failed_ledger_job(relay)
    with admin_relay(tableau, database_url, worker=False) as relay, client(relay) as api:
        relay.post(sample_event("completed", job_id=303, run_id=2))
        [waiting] = [j.id for j in relay.jobs() if j.state == "queued"]
        assert api.post(f"/api/jobs/{old_id}/replay").json()["replayed_as"] == waiting
        job = api.get(f"/api/jobs/{waiting}").json()
        assert job["state"] == "queued"
        assert sorted(e["run_id"] for e in job["events"]) == ["12345", "2"]
        assert len(relay.jobs()) == 2


def test_the_dashboards_replay_button_redirects_to_the_page(
    relay: Relay, api: httpx.Client
) -> None:
    old_id = failed_ledger_job(relay)
    answer = api.post(f"/jobs/{old_id}/replay")
    assert answer.status_code == 303
    new_id = max(j.id for j in relay.jobs())
    assert answer.headers["location"] == f"/?replayed={old_id}&to={new_id}"
    page = api.get(answer.headers["location"]).text
    assert f"Refresh job #{old_id} replayed" in page


def test_the_dashboards_replay_of_a_succeeded_job_says_why_not(
    relay: Relay, api: httpx.Client
) -> None:
    relay.post(sample_event("completed", job_id=101))
    [job_id] = settled(relay)
    answer = api.post(f"/jobs/{job_id}/replay")
    assert answer.status_code == 409
    assert "only failed or dead jobs can be replayed" in answer.text


def test_a_cross_site_post_is_refused_even_with_the_token(start: Start) -> None:
    """A browser sends cached Basic credentials with another site's form post."""
    relay = start(token=TOKEN)
    old_id = failed_ledger_job(relay)
    with client(relay, TOKEN) as api:
        for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}):
            answer = api.post(f"/jobs/{old_id}/replay", headers=headers)
            assert answer.status_code == 403, headers
        assert api.post(f"/jobs/{old_id}/replay", headers={"Sec-Fetch-Site": "same-origin"})
    assert relay.store.get_job(old_id).attempt_log[-1].outcome == "replayed"  # type: ignore[union-attr]


# -- access --------------------------------------------------------------------

GUARDED = [
    ("GET", "/"),
    ("GET", "/api/summary"),
    ("GET", "/api/jobs"),
    ("POST", "/api/jobs/1/replay"),
    ("GET", "/openapi.json"),
]
# What a reverse proxy adds to what it passes on (nginx: X-Real-IP, X-Forwarded-*; RFC 7239).
PROXIED = [
    {"X-Forwarded-For": "203.0.113.9"},
    {"X-Forwarded-Host": "relay.example.com"},
    {"X-Forwarded-Proto": "https"},
    {"X-Real-IP": "203.0.113.9"},
    {"Forwarded": "for=203.0.113.9;proto=https"},
    {"Via": "1.1 proxy.example"},
]


def basic(password: str, user: str = "admin") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(("method", "path"), GUARDED)
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Bearer {TOKEN}x", basic("wrong"), "Basic !!!", TOKEN],
)
def test_with_a_token_set_a_request_without_it_is_401(
    start: Start, method: str, path: str, authorization: str | None
) -> None:
    relay = start(token=TOKEN)
    headers = {"Authorization": authorization} if authorization else {}
    with client(relay) as api:
        answer = api.request(method, path, headers=headers)
    assert answer.status_code == 401
    scheme = "Bearer" if path.startswith("/api") else "Basic"
    assert answer.headers["www-authenticate"] == f'{scheme} realm="dbt-tableau-relay"'
    assert TOKEN not in answer.text


@pytest.mark.parametrize("authorization", [f"Bearer {TOKEN}", basic(TOKEN), basic(TOKEN, "")])
def test_with_a_token_set_bearer_or_basic_with_it_is_served(
    start: Start, authorization: str
) -> None:
    relay = start(token=TOKEN)
    with client(relay) as api:
        assert api.get("/api/summary", headers={"Authorization": authorization}).status_code == 200
        page = api.get("/", headers={"Authorization": authorization})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize("listen", ["127.0.0.1:8080", "[::1]:8080", "localhost:8080"])
def test_without_a_token_a_loopback_listener_is_open(start: Start, listen: str) -> None:
    relay = start(listen=listen)
    with client(relay) as api:
        assert api.get("/api/summary").status_code == 200
        assert api.get("/").status_code == 200


@pytest.mark.parametrize("listen", ["0.0.0.0:8080", "192.168.1.20:8080", "[::]:8080"])
@pytest.mark.parametrize(("method", "path"), GUARDED)
def test_without_a_token_a_reachable_listener_refuses_and_says_why(
    start: Start, listen: str, method: str, path: str
) -> None:
    relay = start(listen=listen)
    with client(relay) as api:
        answer = api.request(method, path)
    assert answer.status_code == 403
    assert "no admin_token is set" in answer.json()["detail"]
    assert listen in answer.json()["detail"]


def test_without_a_token_a_request_for_another_host_is_refused(relay: Relay) -> None:
    """DNS rebinding: a web page's name resolved to 127.0.0.1 reaches only the open parts."""
    rebound = {"Host": "attacker.example:8080"}
    with client(relay) as api:
        answer = api.get("/api/summary", headers=rebound)
        assert api.get("/healthz", headers=rebound).status_code == 200
    assert answer.status_code == 403
    assert "admin_token" in answer.json()["detail"]


def test_without_a_token_a_request_through_a_proxy_is_refused_and_says_why(relay: Relay) -> None:
    """nginx's default proxy_pass connects from 127.0.0.1 and sends Host: 127.0.0.1:PORT:
    only the headers it adds tell the internet's requests from this machine's."""
    old_id = failed_ledger_job(relay)
    local_host = {"Host": relay.url.removeprefix("http://")}
    with client(relay) as api:
        for method, path in [*GUARDED, ("POST", f"/api/jobs/{old_id}/replay")]:
            for headers in PROXIED:
                answer = api.request(method, path, headers=local_host | headers)
                assert answer.status_code == 403, (method, path, headers)
                detail = answer.json()["detail"]
                assert "set admin_token" in detail
                assert next(iter(headers)).lower() in detail
        assert api.get("/api/summary", headers=local_host).status_code == 200  # not proxied
        assert api.get("/healthz", headers=PROXIED[0]).status_code == 200
    assert relay.store.get_job(old_id).replayed_as is None  # type: ignore[union-attr]


def test_without_a_token_nginxs_bare_proxy_pass_is_refused(relay: Relay) -> None:
    """`proxy_pass http://127.0.0.1:PORT;` alone adds no header: only HTTP/1.0 gives it away."""
    host = relay.url.removeprefix("http://")
    request = f"GET /api/summary HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", int(host.rpartition(":")[2])), 10) as sock:
        sock.sendall(request.encode())
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split()[1] == b"403"
    assert b"HTTP/1.0" in body
    assert b"set admin_token" in body


def test_with_a_token_a_request_through_a_proxy_is_served(start: Start) -> None:
    relay = start(token=TOKEN)
    with client(relay, TOKEN) as api:
        for headers in PROXIED:
            assert api.get("/api/summary", headers=headers).status_code == 200, headers


@pytest.mark.parametrize("peer", ["203.0.113.9", "10.0.0.7", "::ffff:192.0.2.1"])
def test_without_a_token_a_peer_that_is_not_loopback_is_refused(
    tableau: Emulator, tmp_path: Path, peer: str
) -> None:
    """Whatever `listen` says: a port published from a container, a socket handed over."""
    settings = relay_settings(tableau.url, f"sqlite:///{tmp_path / 'relay.db'}")
    answers = asyncio.run(_requests_from(create_app(settings), peer, GUARDED))
    for path, answer in answers.items():
        assert answer.status_code == 403, path
        assert peer in answer.json()["detail"]
        assert "set admin_token" in answer.json()["detail"]
    local = asyncio.run(_requests_from(create_app(settings), "127.0.0.1", [("GET", "/api/jobs")]))
    assert local[("GET", "/api/jobs")].status_code == 200


async def _requests_from(
    app: FastAPI, peer: str, calls: list[tuple[str, str]]
) -> dict[tuple[str, str], httpx.Response]:
    """Each call to the running app (lifespan included) on a connection from `peer`."""
    transport = httpx.ASGITransport(app, client=(peer, 40000))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as api,
    ):
        return {(m, p): await api.request(m, p) for m, p in calls}


def test_there_is_no_swagger_ui_nor_redoc(relay: Relay) -> None:
    """They loaded scripts from a CDN, unpinned and unchecked, onto the admin API's origin."""
    with client(relay) as api:
        for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
            assert api.get(path).status_code == 404, path


def test_the_openapi_schema_is_behind_the_admin_token(start: Start) -> None:
    relay = start(token=TOKEN)
    with client(relay) as api:
        refused = api.get("/openapi.json")
    with client(relay, TOKEN) as api:
        served = api.get("/openapi.json")
    assert refused.status_code == 401
    assert served.status_code == 200
    assert "/api/summary" in served.json()["paths"]


@pytest.mark.parametrize(("token", "listen"), [(TOKEN, "0.0.0.0:8080"), (None, "0.0.0.0:8080")])
def test_health_metrics_and_the_webhook_are_never_guarded(
    start: Start, token: str | None, listen: str
) -> None:
    relay = start(token=token, listen=listen)
    with client(relay) as api:
        for path in ("/healthz", "/readyz", "/metrics"):
            assert api.get(path).status_code == 200, path
    assert relay.post(sample_event("completed", job_id=101))["http"] == 202


def test_no_secret_is_in_any_answer_or_page(start: Start) -> None:
    relay = start(token=TOKEN, listen="0.0.0.0:8080")
    for job_id in (101, 303, 999):
        relay.post(sample_event("completed", job_id=job_id))
    jobs = settled(relay)
    event_ids = [e.id for e in relay.store.list_events()]
    paths = ["/", "/api/summary", "/api/events", "/api/jobs", "/openapi.json"]
    paths += [f"/api/jobs/{i}" for i in jobs] + [f"/api/events/{i}" for i in event_ids]
    with client(relay, TOKEN) as api:
        answers = [api.get(path) for path in paths]
        answers.append(api.get("/api/summary", headers={"Authorization": f"Bearer {SECRET}"}))
    for answer in answers:
        for secret in (TOKEN, SECRET, PAT_SECRET):
            assert secret not in answer.text, (answer.url, secret)
    assert all(a.status_code == 200 for a in answers[:-1])
