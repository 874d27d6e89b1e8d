"""Which Tableau answers are worth retrying: the boundary where TSC and requests errors end.

Pure functions, tested with parametrize: `classify` turns one failed answer
into the project's exception for it, `translate` does the same for whatever
TSC or requests raised, and `raise_for_transient` is a requests response hook
that reads 429 and 5xx answers (Retry-After, Tableau Cloud's HTML 429 page)
before TSC, which drops headers and cannot parse HTML, sees them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from defusedxml.ElementTree import fromstring
from tableauserverclient.server import exceptions as tsc_server_errors
from tableauserverclient.server.endpoint import exceptions as tsc_errors

from dbt_tableau_relay.errors import (
    AlreadyQueuedError,
    NotFoundError,
    PermanentTableauError,
    SessionInvalidError,
    TableauError,
    TransientTableauError,
)


def classify(
    status: int | None,
    code: str | None = None,
    summary: str = "",
    detail: str = "",
    retry_after: float | None = None,
) -> TableauError:
    """Turn one failed Tableau answer into the project's exception for it."""
    status = status or _status_of(code)
    text = f"Tableau {code or status}: {summary or 'error'}" + (f" ({detail})" if detail else "")
    kw: dict[str, Any] = {
        "code": code,
        "status": status,
        "summary": summary,
        "detail": detail,
        "retry_after": retry_after,
    }
    if code == "409093":
        return AlreadyQueuedError(text, **kw)
    if code in ("401000", "401002"):
        return SessionInvalidError(text, **kw)
    if status is None or status == 429 or status >= 500 or status == 408:
        return TransientTableauError(text, **kw)
    if status == 404:
        return NotFoundError(text, **kw)
    return PermanentTableauError(text, **kw)


def _status_of(code: str | None) -> int | None:
    """Tableau's six-digit codes start with the HTTP status."""
    return int(code[:3]) if code and code[:3].isdigit() else None


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After in seconds, given as a number or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _error_of_body(body: bytes) -> tuple[str | None, str, str]:
    """(code, summary, detail) from an XML error body; nothing for HTML or other text."""
    try:
        root = fromstring(body)
    except Exception:  # noqa: BLE001 - HTML 429 pages, proxies' text, empty bodies
        return None, "", ""
    error = next((el for el in root.iter() if el.tag.endswith("error")), None)
    if error is None:
        return None, "", ""
    texts = {el.tag.rsplit("}", 1)[-1]: (el.text or "").strip() for el in error}
    return error.get("code"), texts.get("summary", ""), texts.get("detail", "")


def raise_for_transient(response: requests.Response, *args: object, **kwargs: object) -> None:
    """requests hook: 429 and 5xx become TransientTableauError before TSC sees them."""
    if response.status_code == 429 or response.status_code >= 500:
        code, summary, detail = _error_of_body(response.content)
        raise classify(
            response.status_code,
            code,
            summary or response.reason or "",
            detail,
            parse_retry_after(response.headers.get("Retry-After")),
        )


def translate(exc: BaseException) -> TableauError:
    """Map a TSC or requests error to the project's own; the boundary of this module."""
    if isinstance(exc, TableauError):
        return exc
    if isinstance(exc, tsc_errors.XMLError):  # ServerResponseError, FailedSignInError
        return classify(None, exc.code or None, exc.summary or "", exc.detail or "")
    if isinstance(exc, tsc_errors.InternalServerError):
        return classify(int(exc.code), None, "internal server error")
    if isinstance(exc, tsc_errors.NonXMLResponseError):
        return TransientTableauError("Tableau answered with a body that is not XML")
    if isinstance(exc, tsc_errors.NotSignedInError):
        return SessionInvalidError("not signed in to Tableau")
    if isinstance(exc, tsc_server_errors.EndpointUnavailableError):
        return PermanentTableauError(f"this Tableau version cannot do that: {exc}")
    if isinstance(exc, requests.Timeout):
        return TransientTableauError(f"Tableau did not answer in time ({type(exc).__name__})")
    if isinstance(exc, requests.ConnectionError):
        return TransientTableauError(f"cannot reach Tableau ({type(exc).__name__})")
    if isinstance(exc, requests.RequestException):
        return TransientTableauError(f"HTTP error talking to Tableau ({type(exc).__name__})")
    raise exc
