"""POST /webhooks/dbt under hostile input, property-based, with the app in-process.

The app runs with its real lifespan and a real database, but requests are
ASGI messages built here: headers as raw bytes (garbage, huge, duplicated,
lying Content-Length), bodies in arbitrary chunks. Unsigned input must get
401 and store nothing; signed input must get 202, 200 or 400, and a 400 body
is stored as 'invalid'. An exception out of the app fails the test: a real
server would have answered 500.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from fastapi import FastAPI
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from starlette.types import Message

from dbt_tableau_relay.app import create_app
from dbt_tableau_relay.config import Settings
from dbt_tableau_relay.store import Event, Store, storable
from dbt_tableau_relay.webhooks import MAX_BODY_BYTES, WEBHOOK_PATH, sign

FIXTURES = Path(__file__).parents[1] / "fixtures" / "dbt-cloud"
SECRET = "hostile-input-secret"
SAMPLE = (FIXTURES / "job.run.completed.json").read_bytes()
SIGN = b"<sign the body>"  # a marker for `requests`: put the body's real signature here
PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class InProcess:
    """The relay's app after start-up, called with hand-made ASGI messages."""

    app: FastAPI
    portal: BlockingPortal
    store: Store

    def post(self, headers: Sequence[tuple[bytes, bytes]], chunks: Sequence[bytes]) -> Answer:
        return self.portal.call(_call, self.app, list(headers), list(chunks) or [b""])

    def count_events(self) -> int:
        with self.store.session(readonly=True) as session:
            return session.scalar(select(func.count()).select_from(Event)) or 0

    def last(self) -> Event:
        with self.store.session(readonly=True) as session:
            event = session.scalars(select(Event).order_by(Event.id.desc()).limit(1)).one()
            session.expunge(event)
            return event


async def _call(app: FastAPI, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> Answer:
    """One POST /webhooks/dbt as a server would pass it, the body in `chunks`."""
    messages: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    answered = asyncio.Event()
    start: dict[str, Any] = {}
    parts: list[bytes] = []

    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        await answered.wait()  # as a server does: nothing more until the client leaves
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        else:
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                answered.set()

    await app(_scope(headers), receive, send)
    decoded = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in start["headers"]}
    return Answer(start["status"], decoded, b"".join(parts))


def _scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": WEBHOOK_PATH,
        "raw_path": WEBHOOK_PATH.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }


@pytest.fixture(scope="module")
def relay(module_database_url: str) -> Iterator[InProcess]:
    url = module_database_url
    store = Store(url)
    settings = Settings.model_validate(
        {
            "database_url": url,
            "dbt": {"webhook_secrets": [SECRET]},
            "tableau": {"server_url": "http://127.0.0.1:9", "token_name": "t", "token_secret": "s"},
            "rules": [{"name": "marts", "on": {"job_id": 123}, "refresh": [{"workbook": "A/B"}]}],
        }
    )
    app = create_app(settings, store=store)
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(app.router.lifespan_context(app)),
    ):
        yield InProcess(app, portal, store)
    store.dispose()


# -- strategies -------------------------------------------------------------------


def _doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(SAMPLE)
    doc.update(changes)
    return doc


_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
)
_json = st.recursive(
    _json_leaf,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=15,
)
_event_ids = st.from_regex(r"wev_[A-Za-z0-9]{1,20}", fullmatch=True)


@st.composite
def _events(draw: st.DrawFn) -> bytes:
    """Event-shaped JSON, some valid, some with one field made wrong."""
    doc = _doc(eventId=draw(_event_ids))
    doc["data"]["jobId"] = draw(st.sampled_from(["123", 123, "999", None]))
    if draw(st.booleans()):
        key = draw(st.sampled_from(["eventType", "timestamp", "accountId", "data", "eventId"]))
        doc[key] = draw(_json)
    return json.dumps(doc, indent=draw(st.sampled_from([None, 2]))).encode()


def _nested(depth: int, opener: bytes) -> bytes:
    closer = b"]" if opener == b"[" else b"}"
    return opener * depth + b"0" + closer * depth


_deep = st.builds(_nested, st.integers(1, 50_000), st.sampled_from([b"[", b'{"a":']))
_huge_numbers = st.builds(
    lambda digits, eid: SAMPLE.replace(b'"accountId": 1', b'"accountId": ' + b"9" * digits).replace(
        b"wev_2L6ZDoilyiWzKkSA59Gmc2d7FDD", eid.encode()
    ),
    st.integers(1, 6000),
    _event_ids,
)
_reencoded = st.builds(
    lambda enc, eid: json.dumps(_doc(eventId=eid)).encode(enc),
    st.sampled_from(["utf-16", "utf-16-be", "utf-32", "latin-1"]),
    _event_ids,
)
_spliced = st.builds(
    lambda junk, at: SAMPLE[:at] + junk + SAMPLE[at:],
    st.binary(min_size=1, max_size=4),
    st.integers(0, len(SAMPLE)),
)
BODIES = (
    _events()  # twice: most signed bodies should be events, to reach the store
    | _events()
    | st.binary(max_size=2048)
    | _json.map(lambda v: json.dumps(v).encode())
    | _deep
    | _huge_numbers
    | _reencoded
    | _spliced
)

_garbage_header = st.binary(max_size=200) | st.builds(
    lambda unit, n: unit * n,
    st.sampled_from([b"0", b"f", b"\xff", b" ", b"\x00"]),
    st.integers(0, 100_000),
)
CONTENT_TYPES = st.sampled_from(
    [
        b"application/json",
        b"application/json; charset=utf-16",
        b"text/plain",
        b"application/x-www-form-urlencoded",
        b"multipart/form-data; boundary=--x",
        b"",
        b"\xff\xfe;;==",
    ]
)


def _content_lengths(body: bytes) -> st.SearchStrategy[bytes | None]:
    """None (chunked), the truth, or a lie that stays within the size limit."""
    n = len(body)
    lies = [0, max(n - 1, 0), n + 1, MAX_BODY_BYTES]
    garbage = [b"-1", b"abc", b"1e3", b" 12", b"0x10", b"", b"\xff"]
    return (
        st.none()
        | st.just(str(n).encode())
        | st.sampled_from([str(v).encode() for v in lies] + garbage)
    )


def _chunks(body: bytes) -> st.SearchStrategy[list[bytes]]:
    """The body cut at arbitrary places, empty chunks included."""
    cuts = st.lists(st.integers(0, len(body)), max_size=6).map(sorted)
    return cuts.map(lambda at: [body[i:j] for i, j in zip([0, *at], [*at, len(body)], strict=True)])


@st.composite
def requests(
    draw: st.DrawFn, authorization: st.SearchStrategy[bytes | None]
) -> tuple[list[tuple[bytes, bytes]], list[bytes], bytes]:
    body = draw(BODIES)
    headers: list[tuple[bytes, bytes]] = []
    signature = draw(authorization)
    if signature is SIGN:
        signature = draw(st.sampled_from([str.lower, str.upper]))(sign(body, SECRET)).encode()
        signature = draw(st.sampled_from([b"", b" ", b"\t"])) + signature
    if signature is not None:
        headers.append((b"authorization", signature))
    if (content_type := draw(st.none() | CONTENT_TYPES)) is not None:
        headers.append((b"content-type", content_type))
    if (length := draw(_content_lengths(body))) is not None:
        headers.append((b"content-length", length))
    else:
        headers.append((b"transfer-encoding", b"chunked"))
    headers.extend(
        draw(
            st.lists(
                st.tuples(st.sampled_from([b"x-junk", b"authorization"]), _garbage_header),
                max_size=2,
            )
        )
    )
    return headers, draw(_chunks(body)), body


# -- properties -------------------------------------------------------------------


Sent = tuple[list[tuple[bytes, bytes]], list[bytes], bytes]


@PROPERTY
@given(sent=requests(st.none() | _garbage_header))
def test_unsigned_input_is_401_and_stores_nothing(relay: InProcess, sent: Sent) -> None:
    headers, chunks, _ = sent
    before = relay.count_events()
    answer = relay.post(headers, chunks)
    assert answer.status == 401, answer.body
    assert set(answer.json()) == {"error"}
    assert relay.count_events() == before


@PROPERTY
@given(sent=requests(st.just(SIGN)))
def test_signed_input_is_202_200_or_400_and_never_an_error(relay: InProcess, sent: Sent) -> None:
    headers, chunks, _ = sent
    answer = relay.post(headers, chunks)
    event(f"answered {answer.status}")  # shown by --hypothesis-show-statistics
    assert answer.status in (200, 202, 400), answer.body


@PROPERTY
@given(sent=requests(st.just(SIGN)))
def test_a_signed_400_is_stored_as_invalid_with_its_reason_and_body(
    relay: InProcess, sent: Sent
) -> None:
    headers, chunks, body = sent
    before = relay.count_events()
    answer = relay.post(headers, chunks)
    if answer.status != 400:
        return
    stored = relay.last()
    assert relay.count_events() == before + 1
    assert (stored.outcome, stored.event_id) == ("invalid", None)
    assert stored.detail == storable(answer.json()["error"])
    assert stored.body == storable(body.decode("utf-8", errors="replace"))


@PROPERTY
@given(sent=requests(st.just(SIGN)))
def test_a_signed_event_is_stored_once_with_its_exact_body(relay: InProcess, sent: Sent) -> None:
    headers, chunks, body = sent
    before = relay.count_events()
    answer = relay.post(headers, chunks)
    if answer.status == 400:
        return
    payload = answer.json()
    assert set(payload) == {"status", "event_id", "refreshes_queued"}
    if payload["status"] == "duplicate" and relay.count_events() == before:
        return  # a repeated delivery: nothing stored
    stored = relay.last()
    assert relay.count_events() == before + 1
    if payload["status"] == "duplicate":  # a new event of a run that asked for all of it
        assert (stored.event_id, stored.outcome) == (payload["event_id"], "ignored")
        assert "already asked" in (stored.detail or "")
        return
    assert (stored.event_id, stored.outcome) == (payload["event_id"], payload["status"])
    assert stored.body == body.decode("utf-8")  # only UTF-8 bodies are events


@PROPERTY
@given(body=_events(), at=st.integers(min_value=0), bit=st.integers(0, 7))
def test_one_flipped_bit_in_a_signed_body_is_401(
    relay: InProcess, body: bytes, at: int, bit: int
) -> None:
    signature = sign(body, SECRET).encode()
    at %= len(body)
    tampered = body[:at] + bytes([body[at] ^ (1 << bit)]) + body[at + 1 :]
    before = relay.count_events()
    answer = relay.post([(b"authorization", signature)], [tampered])
    assert answer.status == 401
    assert relay.count_events() == before


@pytest.mark.parametrize(
    "length",
    [str(MAX_BODY_BYTES + 1).encode(), b"99999999999999999999999999"],
)
def test_a_declared_length_over_the_limit_is_413_whatever_the_real_body(
    relay: InProcess, length: bytes
) -> None:
    before = relay.count_events()
    headers = [(b"authorization", sign(SAMPLE, SECRET).encode()), (b"content-length", length)]
    answer = relay.post(headers, [SAMPLE])
    assert (answer.status, answer.headers.get("connection")) == (413, "close")
    assert relay.count_events() == before
