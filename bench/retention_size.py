"""Retention benchmark: SQLite's size before and after a prune, and the webhook meanwhile.

    .venv/bin/python bench/retention_size.py [--events 100000] [--rate 500] [--keep 10000]
                                             [--rate-during 200]

Method (see bench/README.md): a `dbt-tableau-relay serve` subprocess on a
fresh SQLite file (its own retention off), against the built-in Tableau
emulator; `--events` distinct signed events at a steady `--rate` (each
refreshes one workbook: jobs coalesce, every event is linked to its job);
then, with the relay still serving and a lighter stream (`--rate-during`)
still arriving, `retention.prune` with a cut-off that keeps the newest
`--keep` events of the stream. Sizes are of the database file and its WAL,
as the disk sees them, before the prune, after it, and after the relay's
clean stop.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select, text
from webhook_load import free_port, wait_healthy

from dbt_tableau_relay.emulators.tableau import Emulator
from dbt_tableau_relay.queue import FINAL_STATES
from dbt_tableau_relay.retention import prune
from dbt_tableau_relay.samples import sample_event, signed_headers
from dbt_tableau_relay.store import Attempt, Event, RefreshJob, RefreshJobEvent, Store

SECRET = "bench-secret"
SENDERS = 50  # connections: enough that a slow answer does not hold the rate back


def request_bytes(port: int, n: int) -> bytes:
    body = sample_event("completed", job_id=101, run_id=n, event_id=f"wev_ret_{n:09d}")
    head = (
        f"POST /webhooks/dbt HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: {signed_headers(body, SECRET)['Authorization']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def paced_sender(
    port: int, schedule: list[tuple[float, int]], latencies: list[float], stop: threading.Event
) -> None:
    """Send each event at its time (perf_counter), on one keep-alive connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for due, n in schedule:
        if stop.is_set():
            break
        payload = request_bytes(port, n)
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        started = time.perf_counter()
        writer.write(payload)
        status = int((await reader.readline()).split()[1])
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        if status != 202:
            raise SystemExit(f"answered {status}")
        latencies.append(time.perf_counter() - started)
    writer.close()


def stream(port: int, numbers: range, rate: float, stop: threading.Event) -> list[float]:
    """Post events `numbers` at `rate` a second; the latency of each answer."""
    start = time.perf_counter() + 0.5
    timed = [(start + i / rate, n) for i, n in enumerate(numbers)]
    latencies: list[float] = []

    async def run() -> None:
        shares = [timed[i::SENDERS] for i in range(SENDERS)]
        await asyncio.gather(*(paced_sender(port, s, latencies, stop) for s in shares))

    asyncio.run(run())
    return latencies


def write_config(folder: Path, database_url: str, tableau_url: str, port: int) -> Path:
    config = folder / "relay.yml"
    config.write_text(
        f"database_url: {database_url}\nlisten: 127.0.0.1:{port}\n"
        f"dbt: {{webhook_secrets: [{SECRET}]}}\n"
        f"tableau: {{server_url: '{tableau_url}', site: bench, token_name: bench,"
        " token_secret: bench-pat}\n"
        "rules: [{name: sales, on: {job_id: 101},"
        " refresh: [{workbook: Sales/Executive Overview}]}]\n"
        "retention: {days: null}\n"  # the benchmark prunes, at the moment it chooses
    )
    return config


def sizes(path: Path) -> str:
    wal = path.with_name(path.name + "-wal")
    db_mb = path.stat().st_size / 1e6
    wal_mb = wal.stat().st_size / 1e6 if wal.exists() else 0.0
    return f"file {db_mb:.1f} MB + WAL {wal_mb:.1f} MB"


def rows(store: Store) -> str:
    counts = []
    with store.session(readonly=True) as session:
        for model in (Event, RefreshJob, RefreshJobEvent, Attempt):
            n = session.scalar(select(func.count()).select_from(model))
            counts.append(f"{model.__tablename__} {n:,}")
        free = session.execute(text("PRAGMA freelist_count")).scalar()
        pages = session.execute(text("PRAGMA page_count")).scalar()
    return ", ".join(counts) + f"; pages {pages:,} ({free:,} free)"


def settle(store: Store, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    unfinished = select(func.count()).where(RefreshJob.state.notin_(FINAL_STATES))
    while time.monotonic() < deadline:
        with store.session(readonly=True) as session:
            if not session.scalar(unfinished):
                return
        time.sleep(0.5)
    raise SystemExit("the relay did not finish its refresh jobs")


def received_at(store: Store, n: int) -> datetime:
    with store.session(readonly=True) as session:
        found = session.scalar(
            select(Event.received_at).where(Event.event_id == f"wev_ret_{n:09d}")
        )
    assert found is not None
    return found


def percentiles(latencies: list[float]) -> str:
    cuts = statistics.quantiles(latencies, n=100)
    return (
        f"p50 {cuts[49] * 1000:.1f} ms  p99 {cuts[98] * 1000:.1f} ms  "
        f"max {max(latencies) * 1000:.1f} ms ({len(latencies):,} answers)"
    )


def prune_while_streaming(
    store: Store, port: int, before: datetime, first: int, rate: float
) -> tuple[float, str, list[float]]:
    stop = threading.Event()
    during: list[float] = []

    def light_stream() -> None:
        during.extend(stream(port, range(first, first + 100_000), rate, stop))

    sender = threading.Thread(target=light_stream)
    sender.start()
    time.sleep(1.0)  # the stream is under way before the prune starts
    started = time.perf_counter()
    pruned = prune(store, before)
    took = time.perf_counter() - started
    stop.set()
    sender.join(60)
    return took, str(pruned.as_dict()), during


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=500.0, help="events a second")
    parser.add_argument("--keep", type=int, default=10_000, help="newest events kept")
    parser.add_argument("--rate-during", type=float, default=200.0, help="during the prune")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        Emulator(site="bench", pat_name="bench", pat_secret="bench-pat", job_duration=0.1) as emu,
    ):
        path = Path(tmp) / "relay.db"
        port = free_port()
        config = write_config(Path(tmp), f"sqlite:///{path}", emu.url, port)
        command = [sys.executable, "-m", "dbt_tableau_relay", "--config", str(config)]
        relay = subprocess.Popen([*command, "--log-level", "WARNING", "serve"], env=os.environ)
        store = Store(f"sqlite:///{path}")
        try:
            wait_healthy(port)
            started = time.perf_counter()
            steady = stream(port, range(args.events), args.rate, threading.Event())
            print(f"streamed {args.events:,} events in {time.perf_counter() - started:.0f} s")
            print(f"webhook, steady stream: {percentiles(steady)}")
            settle(store)
            print(f"before the prune: {sizes(path)}; {rows(store)}")
            before = received_at(store, args.events - args.keep)
            took, pruned, during = prune_while_streaming(
                store, port, before, args.events, args.rate_during
            )
            print(f"prune: {took:.1f} s, {pruned}")
            print(f"webhook, during the prune: {percentiles(during)}")
            print(f"after the prune: {sizes(path)}; {rows(store)}")
        finally:
            store.dispose()
            relay.send_signal(signal.SIGTERM)
            relay.wait(60)
        print(f"after the relay's clean stop: {sizes(path)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
