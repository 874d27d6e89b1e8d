"""The emulator's control plane and body cap over real HTTP: a web page in a browser on the
same machine can neither reset it nor inject faults, and no request can make it hold a
large body."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import requests

from dbt_tableau_relay.emulators.tableau import Emulator, Faults
from dbt_tableau_relay.emulators.tableau.guard import MAX_BODY_BYTES

TOKEN = "emulator-control-token-5e1f"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def guarded() -> Iterator[Emulator]:
    with Emulator(control_token=TOKEN) as emulator:
        yield emulator


def port_of(emulator: Emulator) -> int:
    return int(emulator.url.rpartition(":")[2])


def raw(emulator: Emulator, head: bytes, body: bytes = b"") -> tuple[int, bytes, bytes]:
    """Send `head` (and `body`) on a socket; status, headers and body, read to the close."""
    with socket.create_connection(("127.0.0.1", port_of(emulator)), timeout=30) as sock:
        sock.sendall(head + body)
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    headers, _, rest = answer.partition(b"\r\n\r\n")
    return int(headers.split()[1]), headers.lower(), rest


def test_this_machine_drives_it(emu: Emulator) -> None:
    for host in (f"127.0.0.1:{port_of(emu)}", f"localhost:{port_of(emu)}"):
        answer = requests.post(
            f"{emu.url}/_emulator/faults",
            json={"latency": 0.01},
            headers={"Host": host},
            timeout=10,
        )
        assert answer.status_code == 200, host


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "attacker.example:{port}"},  # DNS rebinding
        {"Host": "127.0.0.1:1"},
        {"Origin": "http://attacker.example"},  # a form post from a web page
        {"Origin": "null"},
    ],
)
def test_a_web_page_cannot_inject_faults_or_reset_it(
    emu: Emulator, headers: dict[str, str]
) -> None:
    sent = {k: v.format(port=port_of(emu)) for k, v in headers.items()}
    emu.add_workbook("Sales/Added By A Test")
    faults = requests.post(
        f"{emu.url}/_emulator/faults", json={"fail": {"count": 3}}, headers=sent, timeout=10
    )
    reset = requests.post(f"{emu.url}/_emulator/reset", headers=sent, timeout=10)
    assert (faults.status_code, reset.status_code) == (403, 403)
    assert "error" in faults.json()
    assert emu.faults.describe() == Faults().describe()  # no fault set
    assert emu.luid("workbook", "Sales/Added By A Test")  # not reset


def test_the_api_is_not_behind_the_control_rule(emu: Emulator) -> None:
    answer = requests.get(
        f"{emu.url}/api/3.27/serverInfo", headers={"Host": "tableau.example.com"}, timeout=10
    )
    assert answer.status_code == 200


def test_with_a_control_token_it_is_required_and_enough(guarded: Emulator) -> None:
    url = f"{guarded.url}/_emulator/luids"
    assert requests.get(url, timeout=10).status_code == 403
    assert (
        requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=10).status_code == 403
    )
    elsewhere = {"Authorization": f"Bearer {TOKEN}", "Host": f"emulator.ci:{port_of(guarded)}"}
    assert requests.get(url, headers=elsewhere, timeout=10).status_code == 200


@pytest.mark.parametrize("path", ["/_emulator/content", "/api/3.27/auth/signin", "/elsewhere"])
def test_a_body_over_1_mib_is_413_before_it_is_read(emu: Emulator, path: str) -> None:
    """Only the headers are sent: the answer comes, and the connection closes, without it."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port_of(emu)}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n"
    )
    status, headers, _ = raw(emu, head.encode())
    assert status == 413
    assert b"connection: close" in headers


def test_a_chunked_body_over_1_mib_is_413(emu: Emulator) -> None:
    head = (
        f"POST /_emulator/content HTTP/1.1\r\nHost: 127.0.0.1:{port_of(emu)}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
    status, _, body = raw(emu, head, chunk * 17)  # 1.06 MiB, never terminated
    assert status == 413
    assert b"Payload Too Large" in body


def test_a_body_at_the_cap_is_read(emu: Emulator) -> None:
    body = b'{"projects": [{"name": "Capped"}]' + b" " * (MAX_BODY_BYTES - 35) + b"}"
    assert len(body) <= MAX_BODY_BYTES
    answer = requests.post(f"{emu.url}/_emulator/content", data=body, timeout=30)
    assert answer.status_code == 200
    assert "Capped" in answer.json()["projects"]


@pytest.mark.parametrize("length", ["abc", "-5", "1e3"])
def test_a_junk_content_length_is_400(emu: Emulator, length: str) -> None:
    head = f"POST /_emulator/reset HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n\r\n"
    status, _, _ = raw(emu, head.encode())
    assert status == 400
