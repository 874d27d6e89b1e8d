"""Everything the emulator remembers, behind one lock, and the request log."""

from __future__ import annotations

import copy
import re
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from dbt_tableau_relay.emulators.tableau.auth import Auth, ConnectedApp
from dbt_tableau_relay.emulators.tableau.content import Content
from dbt_tableau_relay.emulators.tableau.jobs import JobBoard

_REFRESH = re.compile(r"^/api/[^/]+/sites/[^/]+/(?:workbooks|datasources)/([^/]+)/refresh/?$", re.I)
_SIGN_IN = re.compile(r"^/api/[^/]+/auth/signin/?$", re.I)
_METADATA = re.compile(r"^/api/metadata/graphql/?$", re.I)
DEFAULT_NODE_LIMIT = 20000  # Tableau's default node limit for one Metadata API answer


@dataclass(frozen=True)
class RecordedRequest:
    """One call the emulator answered. Never holds a token or a secret.

    `status` is 0 for a call whose connection was dropped unanswered;
    `item_id` is the workbook or data source LUID of a refresh POST.
    """

    method: str
    path: str
    query: dict[str, str]
    status: int
    at: float
    item_id: str | None
    had_token: bool

    @property
    def is_refresh(self) -> bool:
        return self.method == "POST" and self.item_id is not None

    @property
    def is_sign_in(self) -> bool:
        return self.method == "POST" and _SIGN_IN.match(self.path) is not None

    @property
    def is_metadata(self) -> bool:
        return self.method == "POST" and _METADATA.match(self.path) is not None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def record(
    method: str, path: str, query: dict[str, str], status: int, had_token: bool
) -> RecordedRequest:
    match = _REFRESH.match(path) if method == "POST" else None
    item_id = match.group(1).lower() if match else None
    return RecordedRequest(method, path, dict(query), status, time.time(), item_id, had_token)


class SiteState:
    """The one site the emulator serves. Hold `lock` while touching anything."""

    def __init__(
        self,
        *,
        site: str,
        pat_name: str,
        pat_secret: str,
        users: Mapping[str, str],
        connected_app: ConnectedApp | None,
        session_ttl: float,
        job_duration: float,
        content: Content,
    ) -> None:
        self.lock = threading.RLock()
        self.site = site
        self.site_luid = str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"dbt-tableau-relay/emulator/site/{site}")
        )
        self.owner = next(iter(users), "relay")
        self.job_duration = job_duration
        self.metadata_node_limit = DEFAULT_NODE_LIMIT
        self.content = content
        self._initial_content = copy.deepcopy(content)
        self.jobs = JobBoard()
        self.auth = Auth(
            site=site,
            site_luid=self.site_luid,
            pat_name=pat_name,
            pat_secret=pat_secret,
            users=users,
            connected_app=connected_app,
            session_ttl=session_ttl,
        )
        self.requests: list[RecordedRequest] = []
        self.base_url = ""

    def log(self, entry: RecordedRequest) -> None:
        with self.lock:
            self.requests.append(entry)

    def reset(self) -> None:
        """Back to the start: initial content, no jobs, sessions or recorded requests."""
        with self.lock:
            self.content = copy.deepcopy(self._initial_content)
            self.jobs.clear()
            self.auth.invalidate_all()
            self.requests.clear()
