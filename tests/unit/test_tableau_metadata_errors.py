"""How a Metadata API answer's errors become the project's exceptions (GraphQL says 200)."""

from __future__ import annotations

from typing import Any

import pytest

from dbt_tableau_relay.errors import (
    PartialMetadataError,
    PermanentTableauError,
    TableauError,
    TransientTableauError,
)
from dbt_tableau_relay.tableau_metadata import checked


def err(code: str | None, message: str = "something", severity: str = "ERROR") -> dict[str, Any]:
    extensions = {"code": code, "severity": severity} if code else {}
    return {"message": message, "extensions": extensions}


DATA = {"databaseTablesConnection": {"nodes": [], "pageInfo": {"hasNextPage": False}}}
TIME_LIMIT = "Reached time limit. Showing partial results."


@pytest.mark.parametrize(
    ("answer", "expected", "code"),
    [
        pytest.param(
            {"data": None, "errors": [err("RATE_EXCEEDED")]},
            TransientTableauError,
            "RATE_EXCEEDED",
            id="rate-exceeded",
        ),
        pytest.param(
            {"data": DATA, "errors": [err("RATE_EXCEEDED")]},
            TransientTableauError,
            "RATE_EXCEEDED",
            id="rate-exceeded-with-data",
        ),
        pytest.param(
            {"data": DATA, "errors": [err("TIME_LIMIT_EXCEEDED", TIME_LIMIT)]},
            PartialMetadataError,
            "TIME_LIMIT_EXCEEDED",
            id="time-limit-partial",
        ),
        pytest.param(
            {"data": DATA, "errors": [err("NODE_LIMIT_EXCEEDED", severity="WARNING")]},
            PartialMetadataError,
            "NODE_LIMIT_EXCEEDED",
            id="node-limit-is-partial-though-a-warning",
        ),
        pytest.param(
            {"data": DATA, "errors": [err("BACKFILL_RUNNING", severity="WARNING")]},
            PartialMetadataError,
            "BACKFILL_RUNNING",
            id="backfill-running",
        ),
        pytest.param(
            {"data": DATA, "errors": [err(None, "oops")]},
            PartialMetadataError,
            None,
            id="codeless-with-data",
        ),
        pytest.param(
            {
                "data": None,
                "errors": [
                    err(None, "Execution canceled because timeout of 30000 millis was reached")
                ],
            },
            TransientTableauError,
            None,
            id="30s-timeout-no-data",
        ),
        pytest.param(
            {"data": {"workbooks": None}, "errors": [err("TIME_LIMIT_EXCEEDED")]},
            TransientTableauError,
            "TIME_LIMIT_EXCEEDED",
            id="time-limit-no-data",
        ),
        pytest.param(
            {"data": None, "errors": [err("ACCESS_DENIED")]},
            PermanentTableauError,
            "ACCESS_DENIED",
            id="access-denied",
        ),
        pytest.param(
            {"data": None, "errors": [err("FEATURE_DISABLED")]},
            PermanentTableauError,
            "FEATURE_DISABLED",
            id="feature-disabled",
        ),
        pytest.param(
            {"data": None, "errors": [err("INVALID_ARGUMENT")]},
            PermanentTableauError,
            "INVALID_ARGUMENT",
            id="invalid-argument",
        ),
        pytest.param(
            {"data": None, "errors": [err(None, "Cannot query field 'x'")]},
            PermanentTableauError,
            None,
            id="validation-error",
        ),
        pytest.param({"data": None}, TransientTableauError, None, id="no-data-no-error"),
        pytest.param(["not", "an", "object"], TransientTableauError, None, id="not-an-object"),
    ],
)
def test_errors_become_project_exceptions(
    answer: Any, expected: type[TableauError], code: str | None
) -> None:
    with pytest.raises(TableauError) as info:
        checked(answer)

    assert type(info.value) is expected
    assert info.value.code == code


def test_max_page_size_exceeded_is_harmless() -> None:
    answer = {"data": DATA, "errors": [err("MAX_PAGE_SIZE_EXCEEDED", severity="WARNING")]}

    assert checked(answer) == DATA


def test_an_answer_without_errors_is_its_data() -> None:
    assert checked({"data": DATA}) == DATA


def test_the_message_names_every_error() -> None:
    answer = {
        "data": None,
        "errors": [err("ACCESS_DENIED", "no"), err("FILTER_REQUIRED", "filter")],
    }

    with pytest.raises(PermanentTableauError, match="ACCESS_DENIED: no; FILTER_REQUIRED: filter"):
        checked(answer)
