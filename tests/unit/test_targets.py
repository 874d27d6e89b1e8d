"""Which Tableau item a `Project/Sub/Name` path names."""

import pytest

from dbt_tableau_relay.errors import TargetError
from dbt_tableau_relay.targets import Item, Project, pick, project_paths, split_path

PROJECTS = [
    Project("p-fin", "Finance", None),
    Project("p-reg", "Regional", "p-fin"),
    Project("p-emea", "EMEA", "p-reg"),
    Project("p-sales", "Sales", None),
    Project("p-sales-reg", "Regional", "p-sales"),
]


def test_project_paths_follow_parents_from_the_top() -> None:
    paths = project_paths(PROJECTS)
    assert paths["p-emea"] == "Finance/Regional/EMEA"
    assert paths["p-sales-reg"] == "Sales/Regional"
    assert paths["p-fin"] == "Finance"


def test_project_paths_survive_an_unlisted_parent_and_a_cycle() -> None:
    paths = project_paths(
        [Project("a", "A", "hidden"), Project("x", "X", "y"), Project("y", "Y", "x")]
    )
    assert paths["a"] == "A"
    assert {paths["x"], paths["y"]} <= {"Y/X", "X/Y", "X", "Y"}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("Finance/Regional/EMEA Revenue", ("Finance/Regional", "EMEA Revenue")),
        ("  Sales / Executive Overview ", ("Sales", "Executive Overview")),
        ("/Sales/Orders/", ("Sales", "Orders")),
        ("Orders", ("", "Orders")),
        ("Q&A: Revenue, 2026 (draft)", ("", "Q&A: Revenue, 2026 (draft)")),
    ],
)
def test_split_path(path: str, expected: tuple[str, str]) -> None:
    assert split_path(path) == expected


@pytest.mark.parametrize("path", ["", "/", "Sales//Orders", "Sales/ /Orders"])
def test_split_path_rejects_empty_parts(path: str) -> None:
    with pytest.raises(TargetError):
        split_path(path)


SAME_NAME = [
    Item("workbook", "wb-sales", "Executive Overview", "Sales"),
    Item("workbook", "wb-fin", "Executive Overview", "Finance"),
    Item("workbook", "wb-emea", "EMEA Revenue", "Finance/Regional"),
]


def test_pick_by_full_path_among_same_names() -> None:
    assert pick("workbook", "Finance/Executive Overview", SAME_NAME).luid == "wb-fin"
    assert pick("workbook", "Sales/Executive Overview", SAME_NAME).luid == "wb-sales"


def test_pick_nested_project() -> None:
    assert pick("workbook", "Finance/Regional/EMEA Revenue", SAME_NAME).luid == "wb-emea"


def test_a_bare_name_is_accepted_when_unique() -> None:
    assert pick("workbook", "EMEA Revenue", SAME_NAME).luid == "wb-emea"


def test_a_bare_name_shared_by_two_projects_is_ambiguous_and_names_both() -> None:
    with pytest.raises(TargetError, match="names 2 workbooks") as info:
        pick("workbook", "Executive Overview", SAME_NAME)
    assert "'Finance/Executive Overview'" in str(info.value)
    assert "'Sales/Executive Overview'" in str(info.value)


def test_wrong_project_names_the_candidates() -> None:
    with pytest.raises(TargetError, match="no workbook at 'Marketing/Executive Overview'") as info:
        pick("workbook", "Marketing/Executive Overview", SAME_NAME)
    assert "Sales/Executive Overview" in str(info.value)


def test_a_name_that_matches_nothing() -> None:
    with pytest.raises(TargetError, match=r"no datasource at 'Finance/Nope'$"):
        pick("datasource", "Finance/Nope", [])


def test_project_path_is_not_a_prefix_match() -> None:
    """`Finance/EMEA Revenue` must not pick the item in Finance/Regional."""
    with pytest.raises(TargetError):
        pick("workbook", "Finance/EMEA Revenue", SAME_NAME)
