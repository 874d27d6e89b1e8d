"""POST /webhooks/dbt over real HTTP under hostile clients: uvicorn in a thread, raw sockets.

Oversized bodies are refused in bounded memory, slow-drip bodies are cut off,
Content-Length lies and clients that leave mid-body cause no error, and the
optional replay window refuses old and future events without storing them.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import time
import tracemalloc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func
from sqlalchemy import select as sql_select

from dbt_tableau_relay.app import create_app
from dbt_tableau_relay.config import Settings
from dbt_tableau_relay.samples import signed_headers
from dbt_tableau_relay.service import RunningServer
from dbt_tableau_relay.service import serve_in_thread as serve
from dbt_tableau_relay.store import Event, Store
from dbt_tableau_relay.webhooks import MAX_BODY_BYTES
from support import empty_database

FIXTURES = Path(__file__).parents[1] / "fixtures" / "dbt-cloud"
SECRET = "hostile-http-secret"
TEN_MIB = 10 * 1024 * 1024
CHUNK = b"x" * 65536
WINDOW = 3600.0  # seconds: the replay window of the `relay` fixture
BODY_TIMEOUT = 0.5  # seconds: the body timeout of the `impatient_relay` fixture
# Well-formed but wrong: a malformed signature would be refused before the body is read.
WRONG_SIGNATURE = "Authorization: " + "0" * 64


@dataclass(frozen=True)
class Relay:
    server: RunningServer
    client: httpx.Client
    store: Store

    def post(self, body: bytes) -> httpx.Response:
        return self.client.post("/webhooks/dbt", content=body, headers=signed_headers(body, SECRET))

    def count_events(self) -> int:
        with self.store.session(readonly=True) as session:
            return session.scalar(sql_select(func.count()).select_from(Event)) or 0

    def outcomes(self) -> dict[str, float]:
        """relay_webhooks_total by outcome, from /metrics."""
        lines = self.client.get("/metrics").text.splitlines()
        found = [ln for ln in lines if ln.startswith("relay_webhooks_total{")]
        return {ln.split('"')[1]: float(ln.rsplit(" ", 1)[1]) for ln in found}

    def connect(self) -> socket.socket:
        return socket.create_connection((self.server.host, self.server.port), timeout=10)


def _start(tmp: Path, **dbt: Any) -> Iterator[Relay]:
    url = f"sqlite:///{tmp / 'relay.db'}"
    settings = Settings.model_validate(
        {
            "database_url": url,
            "dbt": {"webhook_secrets": [SECRET], **dbt},
            "tableau": {"server_url": "http://127.0.0.1:9", "token_name": "t", "token_secret": "s"},
            "rules": [{"name": "marts", "on": {"job_id": 123}, "refresh": [{"workbook": "A/B"}]}],
        }
    )
    store = Store(url)
    with (
        serve(create_app(settings, store=store)) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        yield Relay(server, client, store)
    store.dispose()


@pytest.fixture(scope="module")
def running_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    """Default limits, and a replay window of an hour."""
    yield from _start(tmp_path_factory.mktemp("relay"), max_event_age_seconds=WINDOW)


@pytest.fixture
def relay(running_relay: Relay) -> Relay:
    """The module's relay, its database emptied for this test."""
    empty_database(running_relay.store)
    return running_relay


@pytest.fixture(scope="module")
def impatient_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    """A relay that waits only BODY_TIMEOUT for a body, so slow-drip tests are short."""
    yield from _start(tmp_path_factory.mktemp("impatient"), body_timeout_seconds=BODY_TIMEOUT)


def event_at(moment: datetime, event_id: str = "wev_hostile_http") -> bytes:
    doc = json.loads((FIXTURES / "job.run.completed.json").read_bytes())
    doc["eventId"] = event_id
    doc["timestamp"] = moment.isoformat().replace("+00:00", "Z")
    return json.dumps(doc).encode()


def head(*lines: str) -> bytes:
    return "\r\n".join(["POST /webhooks/dbt HTTP/1.1", "Host: relay", *lines, "", ""]).encode()


def chunked(data: bytes) -> bytes:
    """One HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(data), data)


@dataclass(frozen=True)
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool  # the server closed the connection after answering

    def json(self) -> Any:
        return json.loads(self.body)


def send_until_answered(sock: socket.socket, pieces: Iterable[bytes], pause: float = 0) -> int:
    """Send `pieces` one after the other, stopping as soon as the server answers.

    Returns the number of bytes sent. A server that closes the connection
    while the client still sends is an answer too.
    """
    sent = 0
    for piece in pieces:
        answered, _, _ = select.select([sock], [], [], pause)
        if answered:
            break
        try:
            sock.sendall(piece)
        except OSError:  # the server closed the connection: its answer is already here
            break
        sent += len(piece)
    return sent


def read_answer(sock: socket.socket, timeout: float = 10) -> RawAnswer:
    """The server's answer, read until it closes the connection or goes quiet."""
    sock.settimeout(timeout)
    data, closed = b"", False
    while True:
        try:
            more = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:  # closed with our unread bytes in its buffer
            closed = True
            break
        if not more:
            closed = True
            break
        data += more
        if _complete(data):
            sock.settimeout(1)  # a closing server's EOF follows at once
    return _parse(data, closed)


def _complete(data: bytes) -> bool:
    head_, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    length = next(
        (
            int(ln.split(b":")[1])
            for ln in head_.split(b"\r\n")
            if ln.lower().startswith(b"content-length:")
        ),
        0,
    )
    return len(body) >= length


def _parse(data: bytes, closed: bool) -> RawAnswer:
    head_, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head_.decode("latin-1").split("\r\n")
    headers = dict(ln.lower().split(": ", 1) for ln in header_lines)
    return RawAnswer(int(status_line.split()[1]), headers, body, closed)


@contextmanager
def traced_peak() -> Iterator[list[int]]:
    """Peak bytes the process allocated (Python's allocators) in the block, over where it began.

    The server runs in this process, so this is the server's memory for a
    request; the client below preallocates its one chunk.
    """
    peak: list[int] = []
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        yield peak
        peak.append(tracemalloc.get_traced_memory()[1] - base)
    finally:
        tracemalloc.stop()


# -- 10 MiB bodies: refused with 413 in bounded memory --------------------------------


def _ten_mib_with_content_length(relay: Relay) -> tuple[RawAnswer, int]:
    with relay.connect() as sock:
        sock.sendall(head(WRONG_SIGNATURE, f"Content-Length: {TEN_MIB}"))
        sent = send_until_answered(sock, [CHUNK] * (TEN_MIB // len(CHUNK)))
        return read_answer(sock), sent


def _ten_mib_chunked(relay: Relay) -> tuple[RawAnswer, int]:
    piece = chunked(CHUNK)
    with relay.connect() as sock:
        sock.sendall(head(WRONG_SIGNATURE, "Transfer-Encoding: chunked"))
        sent = send_until_answered(sock, [piece] * (TEN_MIB // len(CHUNK)))
        return read_answer(sock), sent


@pytest.mark.parametrize(
    ("send", "bound"),
    # Measured: about 0.3 MiB with Content-Length (uvicorn's read buffers), 1.3 to 1.6 MiB
    # chunked (the 1 MiB the limit lets in, plus those buffers).
    [(_ten_mib_with_content_length, 1024 * 1024), (_ten_mib_chunked, 3 * 1024 * 1024)],
    ids=["content-length", "chunked"],
)
def test_a_10_mib_body_is_413_and_the_server_holds_a_fraction_of_it(
    relay: Relay, send: Any, bound: int
) -> None:
    """With Content-Length it is refused before reading; chunked, once past 1 MiB."""
    send(relay)  # warm-up: first-request allocations are not the body's
    with traced_peak() as peak:
        answer, sent = send(relay)
    assert (answer.status, answer.closed) == (413, True)
    assert answer.json() == {"error": f"body larger than {MAX_BODY_BYTES} bytes"}
    assert peak[0] < bound < TEN_MIB, f"peak {peak[0]} bytes; {sent} bytes sent before the answer"
    assert relay.count_events() == 0


# -- slow bodies: cut off by the body timeout --------------------------------------


def test_a_body_sent_a_byte_at_a_time_is_cut_off_with_408(impatient_relay: Relay) -> None:
    body = event_at(datetime.now(UTC))
    before = impatient_relay.count_events()
    with impatient_relay.connect() as sock:
        sock.sendall(head(*_signed(body), f"Content-Length: {len(body)}"))
        sent = send_until_answered(sock, _bytes(body), pause=0.05)
        answer = read_answer(sock)
    assert sent < len(body)
    assert (answer.status, answer.closed) == (408, True)
    assert answer.json() == {"error": f"body not received within {BODY_TIMEOUT:g} s"}
    assert impatient_relay.count_events() == before


def test_a_chunked_body_sent_a_byte_at_a_time_is_cut_off_with_408(
    impatient_relay: Relay,
) -> None:
    body = event_at(datetime.now(UTC))
    with impatient_relay.connect() as sock:
        sock.sendall(head(*_signed(body), "Transfer-Encoding: chunked"))
        send_until_answered(sock, (chunked(b) for b in _bytes(body)), pause=0.05)
        answer = read_answer(sock)
    assert (answer.status, answer.closed) == (408, True)


def test_a_content_length_longer_than_the_body_is_408_not_a_hang(
    impatient_relay: Relay,
) -> None:
    body = event_at(datetime.now(UTC))
    with impatient_relay.connect() as sock:
        sock.sendall(head(*_signed(body), f"Content-Length: {len(body) + 100}") + body)
        answer = read_answer(sock)
    assert (answer.status, answer.closed) == (408, True)


def test_a_body_timeout_is_counted_with_its_own_outcome(impatient_relay: Relay) -> None:
    before = impatient_relay.outcomes()
    with impatient_relay.connect() as sock:
        sock.sendall(head(WRONG_SIGNATURE, "Content-Length: 10") + b"{")
        read_answer(sock)
    after = impatient_relay.outcomes()
    assert after["timeout"] - before["timeout"] == 1


def test_a_body_that_arrives_in_time_in_small_pieces_is_accepted(relay: Relay) -> None:
    """The timeout is on the whole body, not on each piece: slow but in time is fine."""
    body = event_at(datetime.now(UTC))
    with relay.connect() as sock:
        sock.sendall(head(*_signed(body), f"Content-Length: {len(body)}"))
        send_until_answered(sock, [body[i : i + 100] for i in range(0, len(body), 100)], 0.02)
        answer = read_answer(sock, timeout=5)
    assert answer.status == 202


# -- Content-Length lies and clients that leave ----------------------------------------


def test_a_content_length_shorter_than_the_body_is_refused_and_stores_nothing(
    relay: Relay,
) -> None:
    """The relay reads the declared bytes, whose signature does not match (401); uvicorn
    may answer first with its own 400 for the rest, taken as a malformed next request."""
    body = event_at(datetime.now(UTC))
    with relay.connect() as sock:
        sock.sendall(head(*_signed(body), f"Content-Length: {len(body) - 10}") + body)
        answer = read_answer(sock, timeout=2)
    assert answer.status in (400, 401)
    assert relay.count_events() == 0


def test_a_client_that_leaves_mid_body_causes_no_error(
    relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with relay.connect() as sock:
        sock.sendall(head(WRONG_SIGNATURE, "Content-Length: 1000") + b'{"eventId"')
    deadline = time.monotonic() + 10
    while "webhook.disconnected" not in caplog.messages and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "webhook.disconnected" in caplog.messages
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert relay.client.get("/healthz").status_code == 200


# -- the replay window ----------------------------------------------------------------


def test_an_event_older_than_the_replay_window_is_422_and_not_stored(relay: Relay) -> None:
    response = relay.post(event_at(datetime.now(UTC) - timedelta(seconds=WINDOW + 60)))
    assert response.status_code == 422
    assert response.json()["event_id"] == "wev_hostile_http"
    assert "older than the 3600 s replay window" in response.json()["error"]
    assert relay.count_events() == 0


def test_dbts_2023_sample_is_refused_by_a_replay_window(relay: Relay) -> None:
    body = (FIXTURES / "job.run.completed.json").read_bytes()
    assert relay.post(body).status_code == 422


def test_an_event_from_beyond_the_clock_skew_in_the_future_is_422(relay: Relay) -> None:
    response = relay.post(event_at(datetime.now(UTC) + timedelta(minutes=10)))
    assert response.status_code == 422
    assert "in the future" in response.json()["error"]
    assert relay.count_events() == 0


def test_an_event_a_little_ahead_of_the_relays_clock_is_accepted(relay: Relay) -> None:
    assert relay.post(event_at(datetime.now(UTC) + timedelta(seconds=20))).status_code == 202


def test_a_recent_event_is_accepted_and_its_retry_is_a_duplicate(relay: Relay) -> None:
    body = event_at(datetime.now(UTC) - timedelta(seconds=WINDOW - 300))
    assert relay.post(body).status_code == 202
    retry = relay.post(body)
    assert (retry.status_code, retry.json()["status"]) == (200, "duplicate")
    assert relay.count_events() == 1


def test_stale_events_are_counted_with_their_own_outcome(relay: Relay) -> None:
    before = relay.outcomes()
    relay.post(event_at(datetime.now(UTC) - timedelta(days=2)))
    after = relay.outcomes()
    assert after["stale"] - before["stale"] == 1
    assert after["accepted"] == before["accepted"]


def test_an_unsigned_stale_event_is_401_not_422(relay: Relay) -> None:
    """The window is checked only for signed events: unsigned input learns nothing more."""
    body = event_at(datetime.now(UTC) - timedelta(days=2))
    response = relay.client.post("/webhooks/dbt", content=body, headers={"Authorization": "0" * 64})
    assert response.status_code == 401


def _signed(body: bytes) -> list[str]:
    return [f"{k}: {v}" for k, v in signed_headers(body, SECRET).items()]


def _bytes(body: bytes) -> Iterator[bytes]:
    return (body[i : i + 1] for i in range(len(body)))
