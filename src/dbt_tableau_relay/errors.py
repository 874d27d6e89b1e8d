"""The project's exceptions. Every error a caller can see is one of these.

    RelayError
    ├── ConfigError                 relay.yml is invalid, incomplete or names a missing variable
    ├── DatabaseError               the database cannot be reached or used (password never shown)
    ├── ReplayError                 a refresh job that cannot be replayed
    │   ├── UnknownJobError         no refresh job has that id
    │   └── NotReplayableError      only failed or dead jobs can be replayed
    ├── MalformedEventError         a (signed) webhook body that is not a dbt Cloud event
    ├── TransientError              a marker: worth retrying (each Transient... below is one)
    ├── LineageError                lineage input that cannot be read
    │   └── ArtifactError           a file that is not a dbt manifest.json / run_results.json
    ├── TableauError                Tableau refused, failed or could not be reached
    │   ├── TransientTableauError   worth retrying: 5xx, 429, RATE_EXCEEDED, dropped calls, timeouts
    │   │   ├── SessionInvalidError 401000/401002: the session ended; sign in again
    │   │   ├── NotLeaderError      this replica does not hold the `tableau` lease: it may not
    │   │   │                       sign in (another replica talks to Tableau; cluster.py)
    │   │   └── PartialMetadataError Metadata API answered partial data (time or node limit)
    │   │                           even in small pages; never used as if complete
    │   ├── AlreadyQueuedError      409093: a refresh of this item is already queued or running
    │   ├── JobWaitTimeout          a Tableau job did not finish within the time allowed
    │   └── PermanentTableauError   will fail the same way again: 400, 401001, 403, 404, 409090,
    │       │                       a Metadata API query refused (ACCESS_DENIED, INVALID_ARGUMENT)
    │       ├── NotFoundError       404: no such item (after one fresh look-up of a path)
    │       └── TargetError         a target path or LUID that resolves to nothing, or to several
    └── DbtCloudError               the dbt Cloud Admin API refused, failed or could not be reached
        ├── TransientDbtCloudError  worth retrying later: 5xx, 429, timeouts, connection errors,
        │                           artifacts of a run that is still running
        └── PermanentDbtCloudError  will fail the same way again: 400, 401, 403, 404
            └── ArtifactNotFoundError  still 404 after `artifact_wait`, or the run finished
                                       too long ago for a 404 to mean "not ingested yet"

Third-party errors (tableauserverclient, requests) are translated at the
boundary in `tableau_errors.py`, httpx's in `dbt_cloud.py`; no caller ever
inspects them.
"""

from __future__ import annotations


class RelayError(Exception):
    """Something went wrong in dbt-tableau-relay."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(RelayError):
    """The configuration is invalid."""


class DatabaseError(RelayError):
    """The database cannot be reached or used."""


class MalformedEventError(RelayError):
    """The webhook body is not a dbt Cloud event."""


class LineageError(RelayError):
    """Lineage input (an artifact, a stored explanation) cannot be read."""


class ArtifactError(LineageError):
    """The file is not a dbt artifact of the kind expected."""


class ReplayError(RelayError):
    """The refresh job cannot be replayed."""


class UnknownJobError(ReplayError):
    """There is no refresh job with that id."""


class NotReplayableError(ReplayError):
    """Only a failed or dead refresh job can be replayed."""


class TableauError(RelayError):
    """Tableau refused the request, failed, or could not be reached.

    `code` is Tableau's six-digit error code when Tableau gave one (match on
    it: summaries are localised); `status` is the HTTP status, if any;
    `retry_after` the delay in seconds Tableau asked for (Retry-After), if any.
    """

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
        summary: str = "",
        detail: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.summary = summary
        self.detail = detail
        self.retry_after = retry_after


class TransientError(RelayError):
    """The same request may succeed later."""


class TransientTableauError(TableauError, TransientError):
    """Tableau is unavailable or overloaded; the same request may succeed later."""


class AlreadyQueuedError(TableauError):
    """Tableau already has a refresh of this item queued or running (409093)."""


class JobWaitTimeout(TableauError):
    """The Tableau job did not finish within the time allowed."""


class PermanentTableauError(TableauError):
    """Tableau refused the request; sending it again will not help."""


class TargetError(PermanentTableauError):
    """A target resolves to no Tableau item, or to more than one."""


class SessionInvalidError(TransientTableauError):
    """Tableau ended the session: it expired, or another sign-in with this PAT replaced it."""


class NotLeaderError(TransientTableauError):
    """This replica does not hold the cluster's `tableau` lease, so it may not sign in."""


class PartialMetadataError(TransientTableauError):
    """Tableau's Metadata API answered only part of the data, with errors; it was not used."""


class NotFoundError(PermanentTableauError):
    """Tableau has no such item (404)."""


class DbtCloudError(RelayError):
    """The dbt Cloud Admin API refused the request, failed, or could not be reached.

    `status` is the HTTP status, if any; `retry_after` the delay in seconds
    dbt Cloud asked for (Retry-After), if any. Messages never hold the token.
    """

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class TransientDbtCloudError(DbtCloudError, TransientError):
    """dbt Cloud is unavailable or overloaded; the same request may succeed later."""


class PermanentDbtCloudError(DbtCloudError):
    """dbt Cloud refused the request; sending it again will not help."""


class ArtifactNotFoundError(PermanentDbtCloudError):
    """The run has no such artifact (in that step), and waiting longer will not bring it."""
