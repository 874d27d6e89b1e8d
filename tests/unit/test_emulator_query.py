"""The emulator's filter parsing and wildcard matching: right answers, with no backtracking."""

from __future__ import annotations

import re
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbt_tableau_relay.emulators.tableau.query import _split_clauses, glob_match, parse_filter

NAME = "Quarterly revenue by region, edition 0001"


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        ("Sales", "Sales", True),
        ("Sales", "sales", False),  # case counts, as on Tableau
        ("Sal*", "Sales", True),
        ("*les", "Sales", True),
        ("*al*", "Sales", True),
        ("S*s", "Sales", True),
        ("S*s", "Ss", True),
        ("S*s", "S", False),  # the prefix and the suffix may not overlap
        ("*", "", True),
        ("**", "anything", True),
        ("a*b*c", "abc", True),
        ("a*b*c", "acb", False),
        ("a*ab", "aab", True),
        ("*aa*aa*", "aaaa", True),
        ("*aa*aa*", "aaa", False),
        ("*" * 26 + "!", NAME, False),  # the pathological filter of issue 8
        ("*" * 26 + "1", NAME, True),
        ("Q*r*e*g*i*o*n*0001", NAME, True),
        ("*.*", "a.b", True),  # no character but `*` is special
        ("*[a]*", "x[a]y", True),
    ],
)
def test_wildcards(pattern: str, text: str, matches: bool) -> None:
    assert glob_match(pattern, text) is matches


def reference(pattern: str, text: str) -> bool:
    """The textbook dynamic programme: `pattern[i:]` matches `text[j:]`."""

    @cache
    def rest(i: int, j: int) -> bool:
        if i == len(pattern):
            return j == len(text)
        if pattern[i] == "*":
            return rest(i + 1, j) or (j < len(text) and rest(i, j + 1))
        return j < len(text) and pattern[i] == text[j] and rest(i + 1, j + 1)

    return rest(0, 0)


@settings(max_examples=2000)
@given(pattern=st.text("ab*", max_size=8), text=st.text("ab", max_size=10))
def test_wildcards_agree_with_the_reference_matcher(pattern: str, text: str) -> None:
    assert glob_match(pattern, text) is reference(pattern, text)


@given(pattern=st.text("ab*c!", max_size=6), text=st.text(max_size=12))
def test_wildcards_agree_with_a_regex_on_any_text(pattern: str, text: str) -> None:
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    assert glob_match(pattern, text) is (re.fullmatch(regex, text, re.DOTALL) is not None)


def test_a_filter_of_commas_alone_parses_to_nothing() -> None:
    assert parse_filter("," * 60_000, ["name"]) == []


def split_by_regex(text: str) -> list[str]:
    """What the clauses were split by before: a lookahead regex, quadratic in commas."""
    return [part.strip() for part in re.split(r",(?![^\[]*\])", text)]


@given(st.text(",[]ab ", max_size=30))
def test_clauses_split_as_the_regex_split_them(text: str) -> None:
    assert _split_clauses(text) == split_by_regex(text)


def test_an_in_list_keeps_its_commas() -> None:
    [in_list, eq] = parse_filter("name:in:[A,B],projectName:eq:Sales", ["name", "projectName"])
    assert in_list.values == ("A", "B")
    assert eq.values == ("Sales",)
