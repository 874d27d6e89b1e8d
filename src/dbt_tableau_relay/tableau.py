"""The relay's Tableau client, built on tableauserverclient (TSC), the official one.

What it adds to TSC, each for a trap of the real API:
- one shared session per PAT: Tableau ends a PAT's earlier session whenever it
  signs in again (401002), so threads share one sign-in taken under a lock,
  renewed once when Tableau ends it or before it expires, signed out at close;
  across replicas, only the one that `may_call` (holds the `tableau` lease,
  cluster.py) sends anything, sign-ins included;
- the API version from serverInfo, never from the user, and a clear error when
  serverInfo fails (TSC would silently stay at 2.4, where refresh is missing);
- targets by project path, resolved to exactly one item and cached, with one
  refetch when a cached LUID answers 404;
- every error translated into the project's own exceptions, classified
  transient or permanent, 429's Retry-After kept (TSC drops headers and cannot
  read Tableau Cloud's HTML 429 body, so a requests response hook reads them:
  tableau_errors.py); a Retry-After pauses every call, not just the refused one;
- jobs polled on one schedule (polling.py), and a refresh it sent but did not
  record found again through Query Jobs (tableau_jobs.py).

Secrets and session tokens never appear in a message or a log line.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import jwt
import requests
import tableauserverclient as TSC

from dbt_tableau_relay import tableau_metadata
from dbt_tableau_relay.config import WORKER_DEFAULTS, TableauSettings, Target
from dbt_tableau_relay.errors import (
    AlreadyQueuedError,
    JobWaitTimeout,
    NotFoundError,
    NotLeaderError,
    PermanentTableauError,
    SessionInvalidError,
    TableauError,
    TransientTableauError,
)
from dbt_tableau_relay.metrics import Endpoint, observe_tableau
from dbt_tableau_relay.polling import next_poll
from dbt_tableau_relay.tableau_errors import raise_for_transient, translate
from dbt_tableau_relay.tableau_jobs import TableauJob, refresh_candidates, refresh_query
from dbt_tableau_relay.targets import Item, ItemKind, Project, items_with_paths, pick, project_paths

log = logging.getLogger(__name__)
T = TypeVar("T")

PAGE_SIZE = 1000  # Tableau's maximum: fewest calls when listing a whole site
SESSION_LIFETIME = 100 * 60.0  # renew before Tableau Cloud's 120-minute limit


def _session_factory() -> requests.Session:
    session = requests.Session()
    session.hooks["response"].append(raise_for_transient)
    return session


# -- the client ----------------------------------------------------------------


class TableauClient:
    """One Tableau site, one shared session, safe to use from many threads."""

    def __init__(
        self,
        settings: TableauSettings,
        *,
        session_lifetime: float = SESSION_LIFETIME,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        may_call: Callable[[], bool] = lambda: True,
    ) -> None:
        self.settings = settings
        self._may_call = may_call
        self._session_lifetime = session_lifetime
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.RLock()
        self._server: Any = None
        self._signed_in_at = 0.0
        self._epoch = 0  # bumped at every sign-in, so one 401 wave renews once
        self._items: dict[tuple[ItemKind, str], Item] = {}
        self._pause_until = 0.0  # no call before this (clock time), after a Retry-After

    # -- session -----------------------------------------------------------------

    def __enter__(self) -> TableauClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def sign_in_count(self) -> int:
        """How many times this client has signed in (one per session)."""
        return self._epoch

    @property
    def api_version(self) -> str | None:
        return self._server.version if self._server else None

    def connect(self) -> None:
        """Sign in now rather than at the first call (to check credentials early)."""
        self._session()

    def close(self) -> None:
        """Sign out, so the PAT's session does not linger until it expires."""
        with self._lock:
            server, self._server = self._server, None
        if server is None or not self._may_call():
            return  # not the leader (any more): the leader's sign-in has ended it
        try:
            server.auth.sign_out()
        except Exception as exc:  # noqa: BLE001 - closing must not fail shutdown
            log.info("tableau.sign_out_failed", extra={"error": type(exc).__name__})
        server.close()

    def forget_session(self) -> None:
        """Drop the session without signing out: another replica's sign-in ends it.

        Calls in flight keep their server and end as they will; the next call
        signs in again, if this client still `may_call`. Not under the lock:
        the caller (the lease's heartbeat) must not wait for a sign-in in flight.
        """
        self._server = None

    def _session(self) -> tuple[Any, int]:
        """The shared signed-in server and its epoch; signs in if there is none."""
        with self._lock:
            expired = self._clock() - self._signed_in_at > self._session_lifetime
            if self._server is None or expired:
                self._respect_pause()  # checked under the lock: waiters see a new pause
                try:
                    self._sign_in()
                except TableauError as error:
                    raise self._noted(error) from None
            return self._server, self._epoch

    def _renew(self, stale_epoch: int) -> None:
        """Sign in again, unless another thread already did since `stale_epoch`."""
        with self._lock:
            if self._epoch == stale_epoch:
                self._sign_in()

    def _sign_in(self) -> None:
        if not self._may_call():  # also here: a call in flight may meet 401002 after the lead
            raise NotLeaderError("another replica talks to Tableau: this one does not sign in")
        s = self.settings
        server = TSC.Server(  # type: ignore[no-untyped-call]
            s.server_url,
            http_options={"timeout": s.request_timeout, "verify": s.verify_ssl},
            session_factory=_session_factory,
        )
        started = time.perf_counter()
        try:
            info = server.server_info.get()
            if info is None:
                raise TransientTableauError("Tableau's serverInfo gave no version")
            server.version = info.rest_api_version
            server.auth.sign_in(self._credentials())
        except Exception as exc:  # noqa: BLE001 - translated, never swallowed
            error = translate(exc)
            observe_tableau("signin", time.perf_counter() - started, error)
            raise _sign_in_error(error) from None
        observe_tableau("signin", time.perf_counter() - started)
        old, self._server = self._server, server
        self._signed_in_at = self._clock()
        self._epoch += 1
        log.info("tableau.signed_in", extra={"api_version": server.version, "site": s.site})
        if old is not None:
            old.close()  # its token is dead already: Tableau ended it at this sign-in

    def _credentials(self) -> Any:
        s = self.settings
        if s.connected_app:
            return TSC.JWTAuth(connected_app_jwt(s), site_id=s.site)
        assert s.token_name  # TableauSettings guarantees both
        assert s.token_secret
        return TSC.PersonalAccessTokenAuth(
            s.token_name, s.token_secret.get_secret_value(), site_id=s.site
        )

    def call(self, action: Callable[[Any], T], endpoint: Endpoint = "other") -> T:
        """Run `action(server)` in the shared session; sign in again once if Tableau ended it.

        Each try is timed in `relay_tableau_request_seconds` under `endpoint`.
        """
        if not self._may_call():  # checked before each call: a follower sends nothing at all
            raise NotLeaderError("another replica talks to Tableau: this one sends nothing")
        self._respect_pause()
        server, epoch = self._session()
        try:
            return self._timed(action, server, endpoint)
        except SessionInvalidError:
            pass
        log.info("tableau.session_renewed", extra={"after_epoch": epoch})
        self._renew(epoch)
        server, _ = self._session()
        return self._timed(action, server, endpoint)

    def _timed(self, action: Callable[[Any], T], server: Any, endpoint: Endpoint) -> T:
        """`action(server)`, timed, its errors translated (and a Retry-After noted)."""
        started = time.perf_counter()
        try:
            result = action(server)
        except Exception as exc:  # noqa: BLE001 - translated, never swallowed
            error = self._noted(translate(exc))
            observe_tableau(endpoint, time.perf_counter() - started, error)
            raise error from None
        observe_tableau(endpoint, time.perf_counter() - started)
        return result

    def _noted(self, error: TableauError) -> TableauError:
        """Remember a Retry-After: it asks the whole client, not one call, to pause."""
        if error.retry_after:
            with self._lock:
                self._pause_until = max(self._pause_until, self._clock() + error.retry_after)
        return error

    def _respect_pause(self) -> None:
        left = self._pause_until - self._clock()
        if left > 0:
            raise TransientTableauError(
                f"Tableau asked for a pause (Retry-After): {left:.1f} s left", retry_after=left
            )

    # -- content -------------------------------------------------------------------

    def projects(self) -> list[Project]:
        raw = self.call(lambda srv: list(TSC.Pager(srv.projects, _page())), "list")
        return [Project(p.id, p.name, p.parent_id) for p in raw]

    def items(self, kind: ItemKind, name: str | None = None) -> list[Item]:
        """The site's workbooks or data sources; only those named `name` if Tableau can filter."""
        options = _page()
        # Tableau's filter syntax has no escape for "," and ":" (they separate
        # clauses and fields), so such names are matched here, on a full listing.
        if name is not None and not set(name) & {",", ":"}:
            equals = TSC.RequestOptions.Operator.Equals
            options.filter.add(TSC.Filter("name", equals, name))  # type: ignore[no-untyped-call]
        endpoint = "workbooks" if kind == "workbook" else "datasources"
        raw = self.call(lambda srv: list(TSC.Pager(getattr(srv, endpoint), options)), "list")
        paths = project_paths(self.projects())
        return items_with_paths(kind, ((i.id, i.name, i.project_id) for i in raw), paths)

    def resolve(self, target: Target, *, fresh: bool = False) -> Item:
        """The one item a target names; cached, unless `fresh`."""
        key = (target.kind, target.path or f"id:{target.luid}")
        if not fresh and (cached := self._items.get(key)):
            return cached
        item = self._lookup(target)
        self._items[key] = item
        return item

    def _lookup(self, target: Target) -> Item:
        if target.luid:
            return self._get_by_luid(target.kind, target.luid)
        assert target.path is not None
        name = target.path.strip().strip("/").rsplit("/", 1)[-1].strip()
        return pick(target.kind, target.path, self.items(target.kind, name))

    def _get_by_luid(self, kind: ItemKind, luid: str) -> Item:
        endpoint = "workbooks" if kind == "workbook" else "datasources"
        raw = self.call(lambda srv: getattr(srv, endpoint).get_by_id(luid), "item")
        paths = project_paths(self.projects())
        return items_with_paths(kind, [(raw.id, raw.name, raw.project_id)], paths)[0]

    def metadata(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A Metadata API query's data, every page of a ...Connection one: tableau_metadata."""
        return tableau_metadata.query(self, query, variables, sleep=self._sleep)

    # -- refresh -------------------------------------------------------------------

    def refresh(self, target: Target, *, incremental: bool = False) -> tuple[Item, TableauJob]:
        """Ask Tableau to refresh a target; its job comes back at once (202).

        A cached LUID that answers 404 is resolved again once: the item may
        have been republished under a new LUID.
        """
        item = self.resolve(target)
        try:
            return item, self.refresh_item(item, incremental=incremental)
        except NotFoundError:
            if target.luid:
                raise
            item = self.resolve(target, fresh=True)
            return item, self.refresh_item(item, incremental=incremental)

    def refresh_item(self, item: Item, *, incremental: bool = False) -> TableauJob:
        endpoint = "workbooks" if item.kind == "workbook" else "datasources"

        def post(srv: Any) -> Any:
            if incremental and not srv.check_at_least_version("3.25"):
                raise PermanentTableauError(
                    f"incremental refresh needs REST API 3.25; this server speaks {srv.version}"
                )
            job = getattr(srv, endpoint).refresh(item.luid, incremental=incremental)
            if job is None:  # TSC 0.42 answers 409093 with None and a warning
                raise AlreadyQueuedError(
                    f"Tableau 409093: a refresh of {item} is already queued or running",
                    code="409093",
                    status=409,
                )
            return job

        job = self.call(post, "refresh")
        log.info("tableau.refresh_queued", extra={"item": item.luid, "tableau_job": job.id})
        return TableauJob.from_tsc(job)

    def job(self, job_id: str) -> TableauJob:
        return TableauJob.from_tsc(self.call(lambda srv: srv.jobs.get_by_id(job_id), "job"))

    def cancel(self, job_id: str) -> None:
        self.call(lambda srv: srv.jobs.cancel(job_id), "cancel")

    def refresh_candidates(self, item: Item, since: datetime, *, incremental: bool) -> list[str]:
        """Ids of the refreshes Tableau lists for `item` created since `since`, oldest first.

        Query Jobs: site administrators only; anyone else gets a 403
        (`PermanentTableauError`). A candidate is the item's refresh only if
        `job(id).item_luid` says so: names are not unique across projects.
        """
        options = refresh_query(item, since, incremental=incremental)
        listed, _ = self.call(lambda srv: srv.jobs.get(options), "jobs")
        return refresh_candidates(listed, item, since)

    def wait(
        self,
        job_id: str,
        *,
        timeout: float = WORKER_DEFAULTS.follow_timeout,
        on_progress: Callable[[TableauJob], None] | None = None,
        expected: float | None = None,
    ) -> TableauJob:
        """Follow a job to its finish code; transient errors while polling are ridden out.

        Polls as the worker does (`polling.next_poll`; `expected`: the usual
        duration, if known), a last time at the deadline. Returns the finished
        job (check `succeeded`, `notes`); raises JobWaitTimeout when it has not
        finished within `timeout` seconds.
        """
        start = self._clock()
        while (left := timeout - (age := self._clock() - start)) > 0:
            self._sleep(min(next_poll(age, expected), left))
            job = self._poll(job_id, on_progress)
            if job is not None and job.finished:
                return job
        raise JobWaitTimeout(f"Tableau job {job_id} did not finish within {timeout:.0f} s")

    def _poll(
        self, job_id: str, on_progress: Callable[[TableauJob], None] | None
    ) -> TableauJob | None:
        """The job now, or None if Tableau could not say this time (a transient error)."""
        try:
            job = self.job(job_id)
        except TransientTableauError as exc:
            log.info("tableau.poll_failed", extra={"tableau_job": job_id, "error": str(exc)})
            return None
        if on_progress:
            on_progress(job)
        return job


def _page() -> Any:
    return TSC.RequestOptions(pagesize=PAGE_SIZE)  # type: ignore[no-untyped-call]


def _sign_in_error(error: TableauError) -> TableauError:
    if error.code == "401001" or (error.code or "").startswith("401"):
        return PermanentTableauError(
            "Tableau refused the sign-in (401001): check the token name and secret "
            "(or connected app), that the token has not expired, and the site",
            code=error.code,
            status=401,
        )
    return error


def connected_app_jwt(settings: TableauSettings, now: float | None = None) -> str:
    """A short-lived JWT for a connected app (direct trust), as Tableau documents it."""
    app = settings.connected_app
    assert app is not None
    issued = time.time() if now is None else now
    claims = {
        "iss": app.client_id,
        "sub": app.username,
        "aud": "tableau",
        "jti": str(uuid.uuid4()),
        "exp": int(issued) + 5 * 60,
        "scp": list(app.scopes),
    }
    headers = {"kid": app.secret_id, "iss": app.client_id}
    return jwt.encode(claims, app.secret_value.get_secret_value(), "HS256", headers=headers)
