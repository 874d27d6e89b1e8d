"""`Emulator`: the Python face of the emulator, and `run_emulator` for the CLI."""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from dbt_tableau_relay.emulators.tableau.auth import ConnectedApp
from dbt_tableau_relay.emulators.tableau.content import (
    Content,
    ItemKind,
    Kind,
    RefreshOutcome,
    content_from_state,
)
from dbt_tableau_relay.emulators.tableau.demo_site import demo_content
from dbt_tableau_relay.emulators.tableau.faults import Faults
from dbt_tableau_relay.emulators.tableau.handler import EmulatorHTTPServer
from dbt_tableau_relay.emulators.tableau.jobs import JobView
from dbt_tableau_relay.emulators.tableau.state import RecordedRequest, SiteState

logger = logging.getLogger("dbt_tableau_relay.emulators.tableau")

ContentSource = Mapping[str, Any] | str | os.PathLike[str] | None

DEMO_PAT_NAME = "relay-pat"
DEMO_PAT_SECRET = "s3cret"  # noqa: S105 - the emulator's published demo credential


class Emulator:
    """A Tableau Server/Cloud REST API stand-in on a real HTTP port.

    `content` is None for the demo site, a state-file mapping, or the path of
    a state file. `connected_app` is None (JWT sign-in refused) or a mapping
    with client_id, secret_id and secret_value. `pat_admin`: whether the
    PAT's owner is a site administrator (Query Jobs answers 403 if not).
    `control_token`, if given, is the Bearer token every /_emulator/ call must
    carry (see `guard`); without one they are served to this machine's clients
    only. Thread-safe.
    """

    def __init__(
        self,
        *,
        site: str = "",
        pat_name: str = DEMO_PAT_NAME,
        pat_secret: str = DEMO_PAT_SECRET,
        job_duration: float = 1.0,
        session_ttl: float = 14400.0,
        users: Mapping[str, str] | None = None,
        connected_app: Mapping[str, str] | ConnectedApp | None = None,
        content: ContentSource = None,
        pat_admin: bool = True,
        control_token: str | None = None,
    ) -> None:
        self.faults = Faults()
        self._control_token = control_token
        self._state = SiteState(
            site=site,
            pat_name=pat_name,
            pat_secret=pat_secret,
            users=users if users is not None else {"admin": "admin-password"},
            connected_app=_connected_app(connected_app),
            session_ttl=session_ttl,
            job_duration=job_duration,
            content=_load_content(content),
        )
        self._state.auth.pat_admin = pat_admin
        self._server: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self, port: int = 0, host: str = "127.0.0.1") -> str:
        """Listen on host:port (0: a free port) in a background thread; the base URL."""
        server = self._bind(port, host)
        # A short poll interval keeps stop() quick: shutdown waits for the next poll.
        serve = functools.partial(server.serve_forever, poll_interval=0.05)
        self._thread = threading.Thread(target=serve, name="tableau-emulator", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._close()

    def __enter__(self) -> Emulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if not self._state.base_url:
            raise RuntimeError("the emulator is not started")
        return self._state.base_url

    # content

    @property
    def site(self) -> str:
        return self._state.site

    @property
    def site_luid(self) -> str:
        return self._state.site_luid

    def luid(self, kind: Kind, path: str) -> str:
        """The LUID of the project, workbook or data source at `path`; KeyError if none."""
        with self._state.lock:
            return self._state.content.luid(kind, path)

    def add_project(self, path: str, *, luid: str | None = None) -> str:
        with self._state.lock:
            return self._state.content.add_project(path, luid=luid).luid

    def add_workbook(
        self,
        path: str,
        *,
        refreshable: bool | None = None,
        luid: str | None = None,
        embedded_datasources: Sequence[Mapping[str, Any]] | None = None,
    ) -> str:
        """A new workbook; `embedded_datasources` in state-file form (catalog.py).

        `refreshable` None: true, or with embedded data sources whether one has an extract.
        """
        if refreshable is None:
            embedded = embedded_datasources or []
            has_extract = any(e.get("has_extracts") for e in embedded)
            refreshable = embedded_datasources is None or has_extract
        links = {"embedded": list(embedded_datasources or [])}
        return self._add("workbook", path, links, refreshable=refreshable, luid=luid)

    def add_datasource(
        self,
        path: str,
        *,
        refreshable: bool = True,
        luid: str | None = None,
        connection_type: str | None = None,
        tables: Sequence[str] | None = None,
    ) -> str:
        """A new published data source; `tables` it reads, as DATABASE.SCHEMA.NAME."""
        return self._add(
            "datasource",
            path,
            {"tables": list(tables or [])},
            refreshable=refreshable,
            luid=luid,
            connection_type=connection_type,
        )

    def add_table(self, name: str, *, connection_type: str | None = None) -> str:
        """A database table, `DATABASE.SCHEMA.NAME` as the database stores it; its LUID."""
        with self._state.lock:
            return self._state.content.catalog.add_table(name, connection_type=connection_type).luid

    def load_content(self, state: Mapping[str, Any]) -> None:
        """Merge content in, in state-file form (as POST /_emulator/content does)."""
        with self._state.lock:
            self._state.content.load(state)

    def republish(self, kind: ItemKind, path: str) -> str:
        """Delete and publish the item again: same path, a new LUID (old one answers 404)."""
        with self._state.lock:
            return self._state.content.republish(kind, path, str(uuid.uuid4())).luid

    def issued_tokens(self) -> list[str]:
        """Every session token this emulator handed out: tests grep outputs for them."""
        with self._state.lock:
            return list(self._state.auth.issued)

    def set_refresh_outcome(
        self, luid: str, finish_code: int = 1, notes: str | None = None
    ) -> None:
        """How the item's next refresh jobs end: 0 success, 1 failed (with notes), 2 cancelled."""
        outcome = RefreshOutcome(finish_code, notes)
        with self._state.lock:
            self._state.content.items[luid.lower()].outcome = outcome

    def content_state(self) -> dict[str, Any]:
        """The current content in state-file form."""
        with self._state.lock:
            return self._state.content.to_state()

    # behaviour

    @property
    def job_duration(self) -> float:
        return self._state.job_duration

    @job_duration.setter
    def job_duration(self, seconds: float) -> None:
        with self._state.lock:
            self._state.job_duration = seconds

    @property
    def metadata_node_limit(self) -> int:
        """Most objects one Metadata API answer holds; more are cut, with NODE_LIMIT_EXCEEDED."""
        return self._state.metadata_node_limit

    @metadata_node_limit.setter
    def metadata_node_limit(self, nodes: int) -> None:
        with self._state.lock:
            self._state.metadata_node_limit = nodes

    @property
    def session_ttl(self) -> float:
        return self._state.auth.session_ttl

    @session_ttl.setter
    def session_ttl(self, seconds: float) -> None:
        with self._state.lock:
            self._state.auth.session_ttl = seconds

    @property
    def pat_admin(self) -> bool:
        """Whether the PAT's owner is a site administrator; if not, Query Jobs answers 403."""
        return self._state.auth.pat_admin

    @pat_admin.setter
    def pat_admin(self, value: bool) -> None:
        with self._state.lock:
            self._state.auth.pat_admin = value

    def complete_job(self, job_id: str) -> JobView | None:
        """End a running refresh now, as the item's refreshes end; None if it had ended."""
        with self._state.lock:
            return self._state.jobs.complete(job_id)

    def invalidate_sessions(self) -> None:
        """End every session at once: the next call with any token gets 401002."""
        with self._state.lock:
            self._state.auth.invalidate_all()

    def reset(self) -> None:
        """Initial content; no jobs, sessions, recorded requests or faults."""
        self._state.reset()
        self.faults.clear()

    # what happened

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._state.lock:
            return list(self._state.requests)

    def refresh_posts(self, luid: str | None = None) -> list[RecordedRequest]:
        """Refresh POSTs, whatever they were answered, optionally for one item."""
        wanted = luid.lower() if luid else None
        return [
            r for r in self.requests if r.is_refresh and (wanted is None or r.item_id == wanted)
        ]

    def sign_ins(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.is_sign_in]

    def metadata_queries(self) -> list[RecordedRequest]:
        """Metadata API (GraphQL) POSTs, whatever they were answered."""
        return [r for r in self.requests if r.is_metadata]

    @property
    def jobs(self) -> tuple[JobView, ...]:
        with self._state.lock:
            return self._state.jobs.views()

    def job(self, job_id: str) -> JobView | None:
        with self._state.lock:
            return self._state.jobs.get(job_id)

    # internals

    def _add(self, kind: ItemKind, path: str, links: dict[str, Any], **options: Any) -> str:
        with self._state.lock:
            content = self._state.content
            item = content.add_item(kind, path, **options)
            content.connect(item, **links)
            if any(e.published and not content.published(e.published) for e in item.embedded):
                raise ValueError(f"{path}: an embedded data source names no published one")
            return item.luid

    def _bind(self, port: int, host: str) -> EmulatorHTTPServer:
        if self._server is not None:
            raise RuntimeError("the emulator is already started")
        server = self._server = EmulatorHTTPServer(
            (host, port), self._state, self.faults, self._control_token
        )
        address, bound_port = server.server_address[:2]
        bound_host = address.decode() if isinstance(address, bytes) else str(address)
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self._state.base_url = f"http://{shown}:{bound_port}"
        logger.info("emulator.started url=%s site=%s", self._state.base_url, self._state.site)
        return server

    def _close(self) -> None:
        if self._server is None:
            return
        self._server.close_connections()
        self._server.server_close()
        self._server = None
        logger.info("emulator.stopped url=%s", self._state.base_url)
        self._state.base_url = ""


def run_emulator(
    port: int,
    host: str = "127.0.0.1",
    site: str = "",
    pat_name: str = DEMO_PAT_NAME,
    pat_secret: str = DEMO_PAT_SECRET,
    state_file: str | os.PathLike[str] | None = None,
    *,
    job_duration: float = 1.0,
    session_ttl: float = 14400.0,
    users: Mapping[str, str] | None = None,
    connected_app: Mapping[str, str] | None = None,
    ready: Callable[[Emulator], None] | None = None,
    control_token: str | None = None,
) -> None:
    """Serve the emulator on host:port until Ctrl-C; `ready` is called once it listens."""
    emulator = Emulator(
        site=site,
        pat_name=pat_name,
        pat_secret=pat_secret,
        job_duration=job_duration,
        session_ttl=session_ttl,
        users=users,
        connected_app=connected_app,
        content=state_file,
        control_token=control_token,
    )
    # Ctrl-C can come at any moment, even before `ready` returns: every moment
    # after start is inside the try, or the server thread would outlive it.
    try:
        emulator.start(port, host)
        if ready is not None:
            ready(emulator)
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()


def _load_content(source: ContentSource) -> Content:
    if source is None:
        return demo_content()
    if isinstance(source, Mapping):
        return content_from_state(source)
    path = Path(source)
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read emulator state file {path}: {exc}") from None
    if not isinstance(state, Mapping):
        raise ValueError(f"emulator state file {path} must hold a JSON object")
    return content_from_state(state)


def _connected_app(value: Mapping[str, str] | ConnectedApp | None) -> ConnectedApp | None:
    if value is None or isinstance(value, ConnectedApp):
        return value
    return ConnectedApp(
        client_id=str(value["client_id"]),
        secret_id=str(value["secret_id"]),
        secret_value=str(value["secret_value"]),
    )
