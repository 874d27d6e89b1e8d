"""`make bench`'s script runs end to end in its quick form, so it never rots.

Nothing here asserts a figure (the quick sizes make them meaningless, and
timings are not tested): only that the script ends well and prints every row.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "run_all.py"
ROWS = [
    "ack p50 / p99, 50 senders, Tableau 2 s (SQLite)",
    "ack p50 / p99, same (PostgreSQL)",
    "durable events/s, SQLite",
    "durable events/s, PostgreSQL",
    "empty handler, same stack and load",
    "ratio SQLite / PostgreSQL to empty",
    "SQLite run of",
    "serve RSS after",
    "database size after",
    "burst of 20 + 1 late, one workbook: refresh POSTs (409093)",
    "same: job polls, job lists, sign-ins",
    "1 s refresh: POSTs, polls, sign-ins",
    "same: end known after",
    "10 min refresh: polls, lag",
    "1 h refresh: polls, lag",
    "duplicate refresh POSTs, 1 kill -9 under 16 events",
]

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.mark.timeout(300)  # about a minute on 2 idle cores; a loaded machine starts Python slowly
def test_make_bench_quick_prints_every_row(postgres_url: str) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--postgres", postgres_url],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    missing = [
        row for row in ROWS if not any(line.startswith(row) for line in map(str.strip, lines))
    ]
    assert missing == [], done.stdout
    table = lines[lines.index(next(line for line in lines if line.startswith("figure"))) + 2 :]
    assert len(table) == len(ROWS), done.stdout
    assert all(len(line.split("  ")) > 1 for line in table)  # a figure beside each name
