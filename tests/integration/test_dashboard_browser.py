"""The dashboard in a real browser: Debian's Chromium driven by Playwright.

Skipped when /usr/bin/chromium or Playwright is missing, unless
RELAY_REQUIRE_BROWSER=1 (CI), where that is a failure. The relay has an
admin token, so the browser signs in the way a person's does: HTTP Basic with
the token as the password.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from admin_harness import LEGACY_LEDGER, TOKEN, admin_relay, emulator, seed_lineage_run
from harness import EXEC, Relay

from dbt_tableau_relay.samples import sample_event

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SECONDS = 1000  # Playwright counts milliseconds


def missing_browser() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is missing (pip install playwright)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if reason := missing_browser():
        if os.environ.get("RELAY_REQUIRE_BROWSER") == "1":
            pytest.fail(f"a browser is required (RELAY_REQUIRE_BROWSER=1): {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[Relay]:
    """A relay with an admin token, one succeeded and one failed refresh job."""
    with (
        emulator() as tableau,
        admin_relay(tableau, f"sqlite:///{tmp_path / 'relay.db'}", token=TOKEN) as relay,
    ):
        relay.post(sample_event("completed", job_id=101))
        relay.post(sample_event("completed", job_id=303))
        assert [(j.target_ref, j.state) for j in relay.settled_jobs()] == [
            (EXEC, "succeeded"),
            (LEGACY_LEDGER, "failed"),
        ]
        yield relay


@pytest.fixture
def page(browser: Browser, relay: Relay) -> Iterator[Page]:
    context = browser.new_context(
        base_url=relay.url,
        http_credentials={"username": "admin", "password": TOKEN},
        viewport={"width": 1400, "height": 1000},
    )
    context.set_default_timeout(15 * SECONDS)
    yield context.new_page()
    context.close()


def row_background(page: Page, job_id: int) -> str:
    cell = page.locator(f"#job-{job_id} td").first
    return str(cell.evaluate("td => getComputedStyle(td).backgroundColor"))


def test_the_dashboard_shows_each_job_with_its_state(page: Page) -> None:
    assert page.goto("/").status == 200  # type: ignore[union-attr]
    succeeded, failed = page.locator("#job-1"), page.locator("#job-2")
    assert succeeded.locator(".badge").inner_text() == "succeeded"
    assert failed.locator(".badge").inner_text() == "failed"
    assert EXEC in succeeded.inner_text()
    assert "Login failed" in failed.inner_text()  # Tableau's notes
    assert "1 item not refreshed: Finance/Legacy Ledger" in page.locator(".banner").inner_text()
    assert row_background(page, 2) != row_background(page, 1)  # the failed one stands out
    assert succeeded.get_by_role("button").count() == 0


def test_replay_on_the_failed_job_shows_the_new_job_refreshing(page: Page, relay: Relay) -> None:
    relay.tableau.set_refresh_outcome(relay.tableau.luid("datasource", LEGACY_LEDGER), 0)
    page.goto("/")
    page.locator("#jobs").get_by_role("button", name="Replay #2").click()
    page.wait_for_url("**/?replayed=2&to=3")
    assert "Refresh job #2 replayed" in page.locator(".banner.info").inner_text()
    assert page.locator("#job-3").is_visible()
    assert "replayed as #3" in page.locator("#job-2").inner_text()
    # The page reloads itself until the replay has Tableau's verdict.
    page.locator("#job-3 .badge", has_text="succeeded").wait_for(timeout=20 * SECONDS)
    assert page.locator("#job-2 .badge").inner_text() == "failed"  # its history is kept


def test_a_runs_page_shows_what_lineage_decided_and_why(
    page: Page, relay: Relay, tmp_path: Path
) -> None:
    seeded = seed_lineage_run(relay.store)
    page.goto("/")
    page.locator("#events").get_by_role("link", name=seeded.run_id).click()
    page.wait_for_url(f"**/runs/{seeded.run_id}")
    refresh, skip = page.locator("#lineage tr.d-refresh"), page.locator("#lineage tr.d-skip")
    assert refresh.locator(".badge").inner_text() == "refresh"
    assert "Finance/Revenue" in refresh.inner_text()
    assert "orders: success" in refresh.inner_text()
    assert skip.locator(".badge").inner_text() == "skip"
    assert "Sales/Pipeline Health" in skip.inner_text()
    assert skip.locator(".node-error").inner_text() == "revenue_daily: error"
    assert "refresh 1, skip 1" in page.locator("#lineage").inner_text()
    screenshot = tmp_path / "run-page.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"\nscreenshot of the run page: {screenshot}")
    # The decision's refresh leads to its job, which says why it was made.
    refresh.get_by_role("link", name=f"#{seeded.refresh_job_id} failed").click()
    page.wait_for_url(f"**/jobs/{seeded.refresh_job_id}")
    assert "orders: success" in page.locator("#explanation").inner_text()


def test_the_jobs_list_is_filtered_with_its_form(page: Page) -> None:
    page.goto("/")
    page.get_by_role("link", name="Every refresh job, with filters").click()
    page.wait_for_url("**/jobs")
    assert page.locator("#jobs tbody tr").count() == 2
    page.get_by_label("State").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/jobs?state=failed&rule=&item=")
    assert page.locator("#jobs tbody tr").count() == 1
    assert LEGACY_LEDGER in page.locator("#job-2").inner_text()
    page.get_by_label("State").select_option("")
    page.get_by_label("Item").fill("executive")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/jobs?state=&rule=&item=executive")
    assert page.locator("#jobs tbody tr").count() == 1
    assert page.locator("#job-1").is_visible()
    assert page.get_by_label("Item").input_value() == "executive"  # the form keeps it
