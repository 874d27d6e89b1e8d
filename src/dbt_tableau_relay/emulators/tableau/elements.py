"""The elements of Tableau's answers, shaped like the recorded real-server answers.

See tableau/server-client-python's test/assets: workbook_get.xml,
datasource_get.xml, project_get.xml / project_create.xml (parentProjectId),
workbook_refresh.xml, job_get_by_id_failed_workbook.xml, server_info_get.xml,
auth_sign_in.xml.
"""

from __future__ import annotations

from dbt_tableau_relay.emulators.tableau.auth import Session, user_luid
from dbt_tableau_relay.emulators.tableau.content import Item, Project
from dbt_tableau_relay.emulators.tableau.jobs import JobView
from dbt_tableau_relay.emulators.tableau.render import El, el, timestamp

PRODUCT_VERSION = "2025.3.0"
PRODUCT_BUILD = "20253.25.1113.1030"
REST_API_VERSION = "3.27"


def server_info() -> El:
    return el(
        "serverInfo",
        el("productVersion", text=PRODUCT_VERSION, build=PRODUCT_BUILD),
        el("restApiVersion", text=REST_API_VERSION),
    )


def credentials(session: Session, site: str, site_luid: str, time_left: str | None) -> El:
    return el(
        "credentials",
        el("site", id=site_luid, contentUrl=site),
        el("user", id=session.user_luid),
        token=session.token,
        estimatedTimeToExpiration=time_left,
    )


def project(p: Project, owner: str) -> El:
    return el(
        "project",
        el("owner", id=user_luid(owner)),
        id=p.luid,
        name=p.name,
        description=p.description,
        createdAt=timestamp(p.created_at),
        updatedAt=timestamp(p.created_at),
        contentPermissions="ManagedByOwner",
        parentProjectId=p.parent_luid,
    )


def workbook(item: Item, owner: str, base_url: str, site: str) -> El:
    return el(
        "workbook",
        el("project", id=item.project.luid, name=item.project.name),
        el("location", id=item.project.luid, type="Project", name=item.project.name),
        el("owner", id=user_luid(owner)),
        el("tags"),
        id=item.luid,
        name=item.name,
        description="",
        contentUrl=item.content_url,
        webpageUrl=_webpage(base_url, site, "workbooks", item.number),
        showTabs="true",
        size="1",
        createdAt=timestamp(item.created_at),
        updatedAt=timestamp(item.created_at),
        encryptExtracts="false",
    )


def datasource(item: Item, owner: str, base_url: str, site: str) -> El:
    return el(
        "datasource",
        el("project", id=item.project.luid, name=item.project.name),
        el("owner", id=user_luid(owner)),
        el("tags"),
        id=item.luid,
        name=item.name,
        contentUrl=item.content_url,
        description="",
        type=item.connection_type,
        createdAt=timestamp(item.created_at),
        updatedAt=timestamp(item.created_at),
        encryptExtracts="false",
        hasExtracts="true" if item.refreshable else "false",
        isCertified="false",
        useRemoteQueryAgent="false",
        webpageUrl=_webpage(base_url, site, "datasources", item.number),
    )


def job(view: JobView) -> El:
    """A refresh job, as the refresh POST and GET .../jobs/{id} answer it."""
    children = [el(view.item_kind, id=view.item_luid, name=view.item_name)]
    if view.notes:
        children.append(el("notes", text=view.notes))
    finished = view.completed_at is not None
    return el(
        "job",
        el("extractRefreshJob", *children),
        id=view.id,
        mode="Asynchronous",
        type="RefreshExtract",
        progress=str(view.progress),
        createdAt=timestamp(view.created_at),
        startedAt=timestamp(view.started_at),
        completedAt=timestamp(view.completed_at),
        finishCode=str(view.finish_code) if finished else None,
    )


def new_job(view: JobView) -> El:
    """The 202 answer to a refresh POST: no progress yet (workbook_refresh.xml)."""
    return el(
        "job",
        el("extractRefreshJob", el(view.item_kind, id=view.item_luid, name=view.item_name)),
        id=view.id,
        mode="Asynchronous",
        type="RefreshExtract",
        createdAt=timestamp(view.created_at),
    )


_STATUS = {None: "InProgress", 0: "Success", 1: "Failed", 2: "Cancelled"}
_SUBTITLE = {"workbook": "Workbook", "datasource": "Data Source"}


def background_job(view: JobView) -> El:
    """An entry of Query Jobs, GET .../jobs (job_get.xml): `title` names the item."""
    status = (
        "Pending"
        if view.started_at is None and view.completed_at is None
        else _STATUS[view.finish_code]
    )
    return el(
        "backgroundJob",
        id=view.id,
        status=status,
        createdAt=timestamp(view.created_at),
        startedAt=timestamp(view.started_at),
        endedAt=timestamp(view.completed_at),
        priority="50",
        jobType=job_type(view),
        title=view.item_name,
        subtitle=_SUBTITLE[view.item_kind],
    )


def job_type(view: JobView) -> str:
    return "increment_extracts" if view.incremental else "refresh_extracts"


def _webpage(base_url: str, site: str, what: str, number: int) -> str:
    site_part = f"/site/{site}" if site else ""
    return f"{base_url}/#{site_part}/{what}/{number}"
