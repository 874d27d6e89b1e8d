"""Webhook load benchmark: acknowledged-and-stored events per second, and latency percentiles.

    .venv/bin/python bench/webhook_load.py [--events 10000] [--senders 50] [--database URL]
                                           [--tableau-latency 0]

Method (see bench/README.md): a `dbt-tableau-relay serve` subprocess with its
worker, against the built-in Tableau emulator (given an added latency per
call, so a slow Tableau is part of the picture); a load generator in this
process holds `--senders` keep-alive connections and posts distinct signed
`job.run.completed` events as fast as the relay answers. Every answer must
be 202; afterwards the store is checked to hold every event. Latency is from
the first byte written to the full answer read, per request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from dbt_tableau_relay.emulators.tableau import Emulator
from dbt_tableau_relay.samples import sample_event, signed_headers
from dbt_tableau_relay.store import Event, Store

SECRET = "bench-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request_bytes(port: int, n: int) -> bytes:
    body = sample_event("completed", job_id=101, run_id=n, event_id=f"wev_bench_{n:09d}")
    headers = signed_headers(body, SECRET)
    head = (
        f"POST /webhooks/dbt HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: {headers['Authorization']}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def sender(
    port: int, payloads: list[bytes], latencies: list[float], statuses: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for payload in payloads:
        started = time.perf_counter()
        writer.write(payload)
        status_line = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - started)
        statuses.append(int(status_line.split()[1]))
    writer.close()


async def load(port: int, numbers: range, senders: int) -> tuple[float, list[float], list[int]]:
    """Post events `numbers` over `senders` connections; bodies are built and signed beforehand."""
    latencies: list[float] = []
    statuses: list[int] = []
    shares = [[request_bytes(port, n) for n in numbers[i::senders]] for i in range(senders)]
    started = time.perf_counter()
    await asyncio.gather(*(sender(port, share, latencies, statuses) for share in shares))
    return time.perf_counter() - started, latencies, statuses


def write_config(folder: Path, database_url: str, tableau_url: str, port: int) -> Path:
    config = folder / "relay.yml"
    config.write_text(
        f"database_url: {database_url}\nlisten: 127.0.0.1:{port}\n"
        f"dbt: {{webhook_secrets: [{SECRET}]}}\n"
        f"tableau: {{server_url: '{tableau_url}', site: bench, token_name: bench,"
        " token_secret: bench-pat}\n"
        "rules: [{name: sales, on: {job_id: 101},"
        " refresh: [{workbook: Sales/Executive Overview}]}]\n"
    )
    return config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=1_000, help="events sent first, not measured")
    parser.add_argument("--senders", type=int, default=50)
    parser.add_argument(
        "--database",
        default="",
        help="SQLAlchemy URL (PostgreSQL: a fresh schema in it); default SQLite",
    )
    parser.add_argument("--tableau-latency", type=float, default=0.0)
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory() as tmp,
        Emulator(
            site="bench", pat_name="bench", pat_secret="bench-pat", job_duration=1.0
        ) as tableau,
    ):
        tableau.faults.latency = args.tableau_latency
        database_url = args.database or f"sqlite:///{Path(tmp) / 'relay.db'}"
        schema = ""
        if database_url.startswith("postgresql"):
            database_url, schema = fresh_schema(database_url)
        port = free_port()
        config = write_config(Path(tmp), database_url, tableau.url, port)
        relay = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dbt_tableau_relay",
                "--config",
                str(config),
                "--log-level",
                "WARNING",
                "serve",
            ],
            env=os.environ,
        )
        try:
            wait_healthy(port)
            asyncio.run(load(port, range(args.events, args.events + args.warmup), args.senders))
            elapsed, latencies, statuses = asyncio.run(load(port, range(args.events), args.senders))
        finally:
            relay.send_signal(signal.SIGTERM)
            relay.wait(60)
        stored = count_stored(database_url)
        if schema:
            drop_schema(database_url, schema)
    report(args, elapsed, latencies, statuses, stored)
    return 0 if stored == args.events + args.warmup and set(statuses) == {202} else 1


def fresh_schema(url: str) -> tuple[str, str]:
    """A new, empty schema per run, so runs neither collide nor leave tables in `public`."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    scoped = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    return scoped.render_as_string(hide_password=False), schema


def drop_schema(url: str, schema: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def wait_healthy(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise SystemExit("the relay did not start")


def count_stored(database_url: str) -> int:
    store = Store(database_url)
    try:
        with store.session(readonly=True) as session:
            prefix = Event.event_id.like("wev_bench_%")
            return int(session.scalar(select(func.count()).where(prefix)) or 0)
    finally:
        store.dispose()


def report(
    args: argparse.Namespace,
    elapsed: float,
    latencies: list[float],
    statuses: list[int],
    stored: int,
) -> None:
    cuts = statistics.quantiles(latencies, n=100)
    print(
        f"events {args.events}  senders {args.senders}  tableau latency {args.tableau_latency} s\n"
        f"answers: {sorted(set(statuses))}  stored: {stored} (warm-up {args.warmup} included)\n"
        f"throughput: {args.events / elapsed:,.0f} events/s over {elapsed:.1f} s\n"
        f"latency ms: p50 {cuts[49] * 1000:.1f}  p90 {cuts[89] * 1000:.1f}  "
        f"p99 {cuts[98] * 1000:.1f}  max {max(latencies) * 1000:.1f}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
