"""Tableau's list query parameters: `filter`, `sort`, `pageSize`, `pageNumber`.

Filter syntax: `field:operator:value` clauses joined by commas, e.g.
`name:eq:Executive Overview,projectName:eq:Sales`. Operators: `eq` (a `*`
in the value is a wildcard: starts-with, ends-with, contains), `in`
(`name:in:[A,B]`), `has` (contains) and, on date fields such as a job's
`createdAt`, `gt`, `gte`, `lt`, `lte` (`createdAt:gt:2024-05-01T06:00:00Z`).
A clause splits at its first two colons, so a value may hold colons. A
comma always ends a clause, as on Tableau; a value that must hold one can
send it percent-escaped a second time (`%252C` on the wire, `%2C` after the
query string is decoded). Sort: `name:asc` / `name:desc`.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar
from urllib.parse import unquote

from dbt_tableau_relay.emulators.tableau.protocol import ApiError
from dbt_tableau_relay.emulators.tableau.render import El, el

T = TypeVar("T")
Getter = Callable[[T], str]

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100


@dataclass(frozen=True)
class Clause:
    field: str
    operator: str
    values: tuple[str, ...]

    def accepts(self, actual: str) -> bool:
        if self.operator in _ORDERED:
            return _ORDERED[self.operator](_when(actual), _when(self.values[0]))
        if self.operator == "has":
            return self.values[0] in actual
        return any(_match(pattern, actual) for pattern in self.values)


def parse_filter(text: str, fields: Sequence[str], ordered: Collection[str] = ()) -> list[Clause]:
    """The clauses of a `filter`; gt/gte/lt/lte only on the `ordered` (date) fields."""
    clauses = [_parse_clause(raw) for raw in _split_clauses(text) if raw]
    for clause in clauses:
        if clause.field not in fields:
            raise ApiError(
                400,
                "400065",
                "Bad Request",
                "The filter query contains a key which is not recognized for this api version.",
            )
        if clause.operator in _ORDERED and clause.field not in ordered:
            raise _unsupported(clause.operator)
    return clauses


def select(
    items: Sequence[T],
    query: dict[str, str],
    getters: dict[str, Getter[T]],
    ordered: Collection[str] = (),
) -> list[T]:
    """The items that pass the `filter` parameter, in `sort` order."""
    clauses = parse_filter(query.get("filter", ""), list(getters), ordered)
    chosen = [i for i in items if all(c.accepts(getters[c.field](i)) for c in clauses)]
    sort = query.get("sort", "")
    if sort.startswith("name:") and "name" in getters:
        chosen.sort(key=getters["name"], reverse=sort.endswith(":desc"))
    return chosen


def paginate(items: Sequence[T], query: dict[str, str]) -> tuple[Sequence[T], El]:
    """One page of `items` and its `<pagination>` element; Tableau's 400/403 errors."""
    size = _positive_int(query.get("pageSize", str(DEFAULT_PAGE_SIZE)), "400007", "page size")
    if size > MAX_PAGE_SIZE:
        raise ApiError(
            403,
            "403014",
            "Page size limit exceeded",
            f"The page size parameter exceeds the system-wide upper limit of {MAX_PAGE_SIZE}.",
        )
    number = _positive_int(query.get("pageNumber", "1"), "400006", "page number")
    if items and (number - 1) * size >= len(items):
        raise ApiError(
            400,
            "400006",
            "Bad Request",
            "The page number is greater than the final page number at the requested page size.",
        )
    page = items[(number - 1) * size : number * size]
    pagination = el(
        "pagination", pageNumber=str(number), pageSize=str(size), totalAvailable=str(len(items))
    )
    return page, pagination


def _split_clauses(text: str) -> list[str]:
    """Commas separate clauses, except inside the brackets of an `in` list: a comma
    whose next bracket to the right is a `]`.

    One pass, right to left. The lookahead regex this replaces (`,(?![^[]*])`)
    scanned to the end of the text from every comma: seconds for a filter of
    commas alone.
    """
    cuts, next_bracket = [], ""
    for at in range(len(text) - 1, -1, -1):
        char = text[at]
        if char in "[]":
            next_bracket = char
        elif char == "," and next_bracket != "]":
            cuts.append(at)
    bounds = [-1, *reversed(cuts), len(text)]
    return [text[a + 1 : b].strip() for a, b in itertools.pairwise(bounds)]


def _parse_clause(raw: str) -> Clause:
    parts = raw.split(":", 2)
    if len(parts) != 3:
        raise ApiError(
            400, "400000", "Bad Request", f"The filter clause '{raw}' is not field:operator:value."
        )
    field, op, value = parts
    if op in ("eq", "has"):
        return Clause(field, op, (unquote(value),))
    if op in _ORDERED:
        _when(unquote(value))  # 400 now for a value that is no date
        return Clause(field, op, (unquote(value),))
    if op == "in" and value.startswith("[") and value.endswith("]"):
        return Clause(field, op, tuple(unquote(v) for v in value[1:-1].split(",")))
    raise _unsupported(op)


_ORDERED: dict[str, Callable[[datetime, datetime], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def _unsupported(op: str) -> ApiError:
    return ApiError(
        400,
        "400065",
        "Bad Request",
        f"The filter query contains an operator '{op}' which is not supported.",
    )


def _when(text: str) -> datetime:
    """An ISO 8601 date-time as Tableau writes them (2024-05-01T06:00:00Z)."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(
            400, "400000", "Bad Request", f"'{text}' is not an ISO 8601 date and time."
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _match(pattern: str, actual: str) -> bool:
    return glob_match(pattern, actual)


def glob_match(pattern: str, text: str) -> bool:
    """Whether `text` is `pattern`, where each `*` stands for any run of characters.

    No regex and no backtracking: the part before the first `*` must start the
    text, the part after the last must end it, and each part between is found
    at its leftmost place after the previous one (the leftmost place always
    leaves the most room for the rest). Each part is searched for once, left
    to right, so `name:eq:**************************!` costs what `name:eq:!`
    does. A regex built from it (`.*.*...!`) backtracked for minutes under the
    emulator's lock.
    """
    first, *middle = pattern.split("*")
    if not middle:
        return pattern == text
    last = middle.pop()
    start, end = len(first), len(text) - len(last)
    if end < start or not text.startswith(first) or not text.endswith(last):
        return False
    for part in middle:
        found = text.find(part, start, end)
        if found < 0:
            return False
        start = found + len(part)
    return True


def _positive_int(raw: str, code: str, what: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ApiError(
            400,
            code,
            "Bad Request",
            f"The {what} parameter is not an integer, or is less than one.",
        )
    return value
