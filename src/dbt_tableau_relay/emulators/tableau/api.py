"""The Tableau REST endpoints: routing and handlers, free of HTTP plumbing.

Every path starts /api/{version}/ and any version number is accepted (TSC
signs in at 2.4 before it asks serverInfo for the real one). Error codes are
those of Tableau's REST API reference; see docs/emulator.md for the table.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from dbt_tableau_relay.emulators.tableau import elements
from dbt_tableau_relay.emulators.tableau.auth import Session
from dbt_tableau_relay.emulators.tableau.content import Item, ItemKind, Project
from dbt_tableau_relay.emulators.tableau.jobs import JobView
from dbt_tableau_relay.emulators.tableau.protocol import ApiError, Reply, Request, bad_request
from dbt_tableau_relay.emulators.tableau.query import paginate, select
from dbt_tableau_relay.emulators.tableau.render import El, many, timestamp
from dbt_tableau_relay.emulators.tableau.state import SiteState

Handler = Callable[[SiteState, Request, dict[str, str]], Reply]

_SITE = r"/sites/(?P<site>[^/]+)"
_ID = r"(?P<id>[^/]+)"


def dispatch(state: SiteState, req: Request) -> Reply:
    """The answer to one /api/ request; raises ApiError for Tableau's error answers."""
    rest = re.match(r"^/api/[^/]+(?P<rest>/.*)$", req.path)
    tail = rest.group("rest").rstrip("/") if rest else ""
    allowed: list[str] = []
    for method, pattern, handler in _ROUTES:
        found = pattern.fullmatch(tail)
        if found is None:
            continue
        if method == req.method:
            return handler(state, req, found.groupdict())
        allowed.append(method)
    if allowed:
        raise ApiError(
            405, "405000", "Invalid request method", f"Request type was not {allowed[0]}."
        )
    version_path = req.path.removeprefix("/api")
    raise ApiError(
        404, "404003", "Resource Not Found", f"Unknown resource '{version_path}' specified in URI."
    )


def _server_info(state: SiteState, req: Request, args: dict[str, str]) -> Reply:
    return Reply(elements=[elements.server_info()])


def _sign_in(state: SiteState, req: Request, args: dict[str, str]) -> Reply:
    payload = req.payload() or {}
    credentials = payload.get("credentials")
    if not isinstance(credentials, dict):
        raise bad_request("The credentials element is missing or incomplete.")
    with state.lock:
        session = state.auth.sign_in(credentials)
        time_left = state.auth.pat_time_left() if session.method == "pat" else None
    return Reply(elements=[elements.credentials(session, state.site, state.site_luid, time_left)])


def _sign_out(state: SiteState, req: Request, args: dict[str, str]) -> Reply:
    if req.token is None:
        state.auth.check(None)  # 401000
    with state.lock:
        state.auth.sign_out(req.token or "")
    return Reply(status=204)


def _projects(state: SiteState, req: Request, args: dict[str, str]) -> Reply:
    with state.lock:
        _enter_site(state, req, args)
        getters: dict[str, Callable[[Project], str]] = {
            "name": lambda p: p.name,
            "parentProjectId": lambda p: p.parent_luid or "",
            "topLevelProject": lambda p: "false" if p.parent_luid else "true",
        }
        chosen = select(list(state.content.projects.values()), req.query, getters)
        page, pagination = paginate(chosen, req.query)
        listed = [elements.project(p, state.owner) for p in page]
    return Reply(elements=[pagination, many("projects", listed)])


def _list_items(kind: ItemKind) -> Handler:
    def handler(state: SiteState, req: Request, args: dict[str, str]) -> Reply:
        with state.lock:
            _enter_site(state, req, args)
            chosen = select(state.content.of_kind(kind), req.query, _ITEM_FILTERS)
            page, pagination = paginate(chosen, req.query)
            listed = [_item_element(state, item) for item in page]
        return Reply(elements=[pagination, many(f"{kind}s", listed)])

    return handler


def _get_item(kind: ItemKind) -> Handler:
    def handler(state: SiteState, req: Request, args: dict[str, str]) -> Reply:
        with state.lock:
            _enter_site(state, req, args)
            return Reply(elements=[_item_element(state, _find_item(state, kind, args["id"]))])

    return handler


def _refresh(kind: ItemKind) -> Handler:
    def handler(state: SiteState, req: Request, args: dict[str, str]) -> Reply:
        with state.lock:
            _enter_site(state, req, args)
            item = _find_item(state, kind, args["id"])
            incremental = _incremental(req.payload())
            if not item.refreshable:
                raise _not_allowed(item)
            if state.jobs.active_for(item.luid) is not None:
                raise ApiError(
                    409,
                    "409093",
                    "Resource Conflict",
                    "Job for 'extract' is already queued. Not queuing a duplicate.",
                )
            view = state.jobs.create(item, incremental=incremental, duration=state.job_duration)
        return Reply(status=202, elements=[elements.new_job(view)])

    return handler


def _get_job(state: SiteState, req: Request, args: dict[str, str]) -> Reply:
    with state.lock:
        _enter_site(state, req, args)
        return Reply(elements=[elements.job(_find_job(state, args["id"]))])


def _cancel_job(state: SiteState, req: Request, args: dict[str, str]) -> Reply:
    with state.lock:
        _enter_site(state, req, args)
        _find_job(state, args["id"])
        if state.jobs.cancel(args["id"]) is None:
            raise ApiError(
                403,
                "403091",
                "Forbidden",
                "Can not cancel job, because it's already complete.",
            )
    return Reply(status=200)


def _list_jobs(state: SiteState, req: Request, args: dict[str, str]) -> Reply:
    with state.lock:
        session = _enter_site(state, req, args)
        if session.method == "pat" and not state.auth.pat_admin:
            raise ApiError(
                403,
                "403000",
                "Forbidden",
                "Only site or server administrators can query the jobs of a site.",
            )
        chosen = select(state.jobs.views(), req.query, _JOB_FILTERS, ordered={"createdAt"})
        page, pagination = paginate(chosen, req.query)
        listed = [elements.background_job(v) for v in page]
    return Reply(elements=[pagination, many("backgroundJobs", listed)])


def _enter_site(state: SiteState, req: Request, args: dict[str, str]) -> Session:
    """The session check, then the site check: 401000/401002, then 404000."""
    session = state.auth.check(req.token)
    if args["site"].lower() != state.site_luid:
        raise ApiError(
            404, "404000", "Resource Not Found", f"Site '{args['site']}' could not be found."
        )
    return session


def _find_item(state: SiteState, kind: ItemKind, luid: str) -> Item:
    item = state.content.item(kind, luid.lower())
    if item is None:
        code, noun = ("404006", "Workbook") if kind == "workbook" else ("404004", "Datasource")
        raise ApiError(404, code, "Resource Not Found", f"{noun} '{luid}' could not be found.")
    return item


def _find_job(state: SiteState, job_id: str) -> JobView:
    view = state.jobs.get(job_id)
    if view is None:
        raise ApiError(404, "404018", "Resource Not Found", f"Job '{job_id}' could not be found.")
    return view


def _not_allowed(item: Item) -> ApiError:
    # Wording as Tableau answered it (tableau/server-client-python issue #1531).
    noun = "workbook" if item.kind == "workbook" else "data source"
    return ApiError(
        409,
        "409090",
        "Bad Request",
        f"Extract operation for the {noun} '{item.name}' is not allowed.. "
        f"(Extract operation for the {noun} is not allowed.)",
    )


def _incremental(payload: dict[str, Any] | None) -> bool:
    refresh = (payload or {}).get("extractRefresh")
    if refresh is None:
        return False
    if not isinstance(refresh, dict):
        raise bad_request("The extractRefresh element is malformed.")
    value = str(refresh.get("incremental", "false")).lower()
    if value not in ("true", "false"):
        raise bad_request("The incremental attribute must be true or false.")
    return value == "true"


def _item_element(state: SiteState, item: Item) -> El:
    build = elements.workbook if item.kind == "workbook" else elements.datasource
    return build(item, state.owner, state.base_url, state.site)


_ITEM_FILTERS: dict[str, Callable[[Item], str]] = {
    "name": lambda i: i.name,
    "projectName": lambda i: i.project.name,
    "contentUrl": lambda i: i.content_url,
}

_JOB_FILTERS: dict[str, Callable[[JobView], str]] = {
    "status": lambda v: elements.background_job(v).attrs["status"],
    "jobType": elements.job_type,
    "title": lambda v: v.item_name,
    "subtitle": lambda v: elements.background_job(v).attrs["subtitle"],
    "createdAt": lambda v: timestamp(v.created_at) or "",
}

_ROUTES: list[tuple[str, re.Pattern[str], Handler]] = [
    (method, re.compile(pattern, re.IGNORECASE), handler)
    for method, pattern, handler in [
        ("GET", r"/serverinfo", _server_info),
        ("POST", r"/auth/signin", _sign_in),
        ("POST", r"/auth/signout", _sign_out),
        ("GET", _SITE + r"/projects", _projects),
        ("GET", _SITE + r"/workbooks", _list_items("workbook")),
        ("GET", _SITE + r"/workbooks/" + _ID, _get_item("workbook")),
        ("POST", _SITE + r"/workbooks/" + _ID + r"/refresh", _refresh("workbook")),
        ("GET", _SITE + r"/datasources", _list_items("datasource")),
        ("GET", _SITE + r"/datasources/" + _ID, _get_item("datasource")),
        ("POST", _SITE + r"/datasources/" + _ID + r"/refresh", _refresh("datasource")),
        ("GET", _SITE + r"/jobs", _list_jobs),
        ("GET", _SITE + r"/jobs/" + _ID, _get_job),
        ("PUT", _SITE + r"/jobs/" + _ID, _cancel_job),
    ]
]
