"""`make bench`: every figure of issue 11 from one run, beside its target and its baseline.

    .venv/bin/python bench/run_all.py [--quick] [--postgres URL]

Sections (method in docs/benchmarks.md):
- webhooks: `webhook_load.py`'s load (50 keep-alive senders, bodies signed
  beforehand, warm-up, every event verified stored) against `serve` on SQLite
  and on PostgreSQL (a schema of its own, dropped after), Tableau answering
  every call in 2 s; the same load against `empty_app.py` (the same uvicorn
  settings, a handler that answers 202 and records nothing); then a run of
  100,000 events on SQLite, at whose end `serve`'s RSS and the database's
  size are read;
- Tableau calls (`scenarios.py`): a burst for one workbook plus a late event;
  one refresh of 40 s followed to its end; 10 min and 1 h from polling.py's
  schedule (the emulator has no clock to speed up);
- duplicates after kill -9 (`scenarios.crash`, test_crash.py's scenario).

`--quick`: small sizes and short refreshes, so the suite runs it
(tests/acceptance/test_bench.py); its figures mean nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import scenarios
import webhook_load

from dbt_tableau_relay.polling import polls_until

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BENCH = Path(__file__).resolve().parent
# Baselines, each with its source: measured before issue 11's items 1-3.
README = "bench/README.md, 2026-11-30"
ISSUE = "issue 11"
BASE_P50_P99 = f"29 / 45-46 ms (SQLite, Tableau 0 s; {README})"
BASE_SQLITE_RATE = f"1,615-1,680 /s ({README})"
BASE_POSTGRES_RATE = f"976-1,326 /s ({README})"
BASE_BURST = f"4-6 POSTs, 2-4 of them 409093 ({ISSUE})"
BASE_POLLS_40S = f"13 polls ({ISSUE})"
BASE_POLLS_1H = f"about 250 polls ({ISSUE})"
BASE_DUPLICATES = f"13 ({ISSUE})"
NONE = "-"


@dataclass(frozen=True)
class Sizes:
    events: int  # measured events of each load: SQLite, PostgreSQL, the empty handler
    retention: int  # the long SQLite run's, after which RSS and size are read
    warmup: int
    burst: int
    refresh: float  # seconds: the "40 s refresh"
    crash_events: int
    kills: int


FULL = Sizes(10_000, 100_000, 1_000, 200, 40.0, 150, 3)
QUICK = Sizes(200, 200, 50, 20, 1.0, 16, 1)
SENDERS = 50
TABLEAU_LATENCY = 2.0


@dataclass(frozen=True)
class Load:
    rate: float
    p50_ms: float
    p99_ms: float
    rss_mib: float = 0.0
    db_mib: float = 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for the test suite")
    parser.add_argument("--postgres", default=POSTGRES, help="a PostgreSQL URL (a schema in it)")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        webhook_rows(rows, folder, sizes, args.postgres)
        tableau_rows(rows, folder, sizes)
    print_table(rows, sizes)
    return 0


def webhook_rows(rows: list[tuple[str, str, str, str]], tmp: Path, sizes: Sizes, pg: str) -> None:
    sqlite = relay_load(tmp / "sqlite", "", sizes.events, sizes.warmup)
    postgres = relay_load(tmp / "postgres", pg, sizes.events, sizes.warmup)
    empty = empty_load(sizes.events, sizes.warmup)
    long = sqlite  # --quick: the SQLite run's own end (one relay start fewer)
    if sizes.retention != sizes.events:
        long = relay_load(tmp / "retention", "", sizes.retention, sizes.warmup)
    total = f"{sizes.retention + sizes.warmup:,} events"
    rows += [
        ("ack p50 / p99, 50 senders, Tableau 2 s (SQLite)",
         f"{sqlite.p50_ms:.1f} / {sqlite.p99_ms:.1f} ms", "p99 < 50 ms", BASE_P50_P99),
        ("ack p50 / p99, same (PostgreSQL)",
         f"{postgres.p50_ms:.1f} / {postgres.p99_ms:.1f} ms", "p99 < 50 ms", NONE),
        ("durable events/s, SQLite", f"{sqlite.rate:,.0f} /s", ">= 1,000 /s", BASE_SQLITE_RATE),
        ("durable events/s, PostgreSQL", f"{postgres.rate:,.0f} /s", ">= 1,000 /s",
         BASE_POSTGRES_RATE),
        ("empty handler, same stack and load", f"{empty.rate:,.0f} /s", NONE, NONE),
        ("ratio SQLite / PostgreSQL to empty",
         f"{sqlite.rate / empty.rate:.2f} / {postgres.rate / empty.rate:.2f}", NONE, NONE),
        (f"SQLite run of {total}: events/s, p50 / p99",
         f"{long.rate:,.0f} /s, {long.p50_ms:.1f} / {long.p99_ms:.1f} ms", NONE, NONE),
        (f"serve RSS after {total} (SQLite)", f"{long.rss_mib:.0f} MiB", NONE, NONE),
        (f"database size after {total} (SQLite)", f"{long.db_mib:.1f} MiB", NONE, NONE),
    ]  # fmt: skip


def relay_load(folder: Path, database: str, events: int, warmup: int) -> Load:
    """webhook_load.py's run, inline: serve, warm-up, measured load, every event stored."""
    folder.mkdir()
    with scenarios.emulator(1.0) as tableau:
        tableau.faults.latency = TABLEAU_LATENCY
        url, schema = f"sqlite:///{folder / 'relay.db'}", ""
        if database:
            url, schema = webhook_load.fresh_schema(database)
        port = webhook_load.free_port()
        config = webhook_load.write_config(folder, url, tableau.url, port)
        command = [sys.executable, "-m", "dbt_tableau_relay", "--config", str(config)]
        relay = subprocess.Popen([*command, "--log-level", "WARNING", "serve"])
        try:
            webhook_load.wait_healthy(port)
            elapsed, latencies = measured(port, events, warmup)
            rss = resident_mib(relay.pid)
        finally:
            relay.terminate()
            relay.wait(60)
        stored = webhook_load.count_stored(url)
        if schema:
            webhook_load.drop_schema(database, schema)
    if stored != events + warmup:
        raise SystemExit(f"{stored} events stored of {events + warmup} acknowledged")
    size = sum(f.stat().st_size for f in folder.glob("relay.db*")) / 2**20
    return summary(events, elapsed, latencies, rss, size)


def empty_load(events: int, warmup: int) -> Load:
    port = webhook_load.free_port()
    app = subprocess.Popen([sys.executable, str(BENCH / "empty_app.py"), str(port)])
    try:
        webhook_load.wait_healthy(port)
        elapsed, latencies = measured(port, events, warmup)
    finally:
        app.terminate()
        app.wait(60)
    return summary(events, elapsed, latencies)


def measured(port: int, events: int, warmup: int) -> tuple[float, list[float]]:
    asyncio.run(webhook_load.load(port, range(events, events + warmup), SENDERS))
    elapsed, latencies, statuses = asyncio.run(webhook_load.load(port, range(events), SENDERS))
    if set(statuses) != {202}:
        raise SystemExit(f"answers other than 202: {sorted(set(statuses))}")
    return elapsed, latencies


def summary(
    events: int, elapsed: float, latencies: list[float], rss: float = 0, db: float = 0
) -> Load:
    cuts = statistics.quantiles(latencies, n=100)
    return Load(events / elapsed, cuts[49] * 1000, cuts[98] * 1000, rss, db)


def resident_mib(pid: int) -> float:
    """VmRSS of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tableau_rows(rows: list[tuple[str, str, str, str]], tmp: Path, sizes: Sizes) -> None:
    (tmp / "burst").mkdir()
    (tmp / "refresh").mkdir()
    (tmp / "crash").mkdir()
    port = webhook_load.free_port
    burst = scenarios.burst(tmp / "burst", port(), sizes.burst, job_duration=sizes.refresh / 4)
    one = scenarios.one_refresh(tmp / "refresh", port(), sizes.refresh)
    acked, accepted, duplicates = scenarios.crash(
        tmp / "crash", port(), sizes.crash_events, sizes.kills, seed=20261130
    )
    polls_10m, lag_10m = polls_until(600)
    known_10m, _ = polls_until(600, expected=600)
    polls_1h, lag_1h = polls_until(3600)
    rows += [
        (f"burst of {sizes.burst} + 1 late, one workbook: refresh POSTs (409093)",
         f"{burst.posts} ({burst.conflicts})", "3 (0)", BASE_BURST),
        ("  same: job polls, job lists, sign-ins",
         f"{burst.polls}, {burst.lists}, {burst.sign_ins}", "-, -, 1", NONE),
        (f"{sizes.refresh:.0f} s refresh: POSTs, polls, sign-ins",
         f"{one.posts}, {one.polls}, {one.sign_ins}", "1, <= 10, 1", BASE_POLLS_40S),
        ("  same: end known after", f"{one.lag or 0:.1f} s", "<= 12 s", NONE),
        ("10 min refresh: polls, lag (polling.py schedule, computed)",
         f"{polls_10m}, {lag_10m:.0f} s ({known_10m} polls once its duration is usual)",
         NONE, NONE),
        ("1 h refresh: polls, lag (polling.py schedule, computed)",
         f"{polls_1h}, {lag_1h:.0f} s", "about 30 polls", BASE_POLLS_1H),
        (f"duplicate refresh POSTs, {sizes.kills} kill -9 under {sizes.crash_events} events",
         f"{duplicates} (of {accepted} accepted; {acked} acknowledged)", "0", BASE_DUPLICATES),
    ]  # fmt: skip


def print_table(rows: list[tuple[str, str, str, str]], sizes: Sizes) -> None:
    head = ("figure", "measured", "target", "baseline (source)")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    kind = "quick (figures mean nothing)" if sizes is QUICK else "full"
    print(f"\nmake bench, {kind}: {SENDERS} senders, Tableau latency {TABLEAU_LATENCY} s in loads")
    for row in [head, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    raise SystemExit(main())
