"""Who may drive the emulator's control plane: the pure decision behind /_emulator/ calls."""

from __future__ import annotations

import pytest

from dbt_tableau_relay.emulators.tableau.guard import (
    MAX_BODY_BYTES,
    BodyTooLarge,
    control_refusal,
    declared_length,
)

PORT = 8900
TOKEN = "emulator-control-token"


@pytest.mark.parametrize(
    "host", ["127.0.0.1:8900", "localhost:8900", "LOCALHOST:8900", "[::1]:8900", "127.0.0.2:8900"]
)
def test_without_a_token_this_machine_is_served(host: str) -> None:
    assert control_refusal({"host": host}, PORT, None) is None


@pytest.mark.parametrize(
    "host",
    [
        "attacker.example:8900",  # DNS rebinding: the page's name resolved to 127.0.0.1
        "attacker.example",
        "127.0.0.1:8901",  # another port: another service
        "127.0.0.1",  # port 80 implied
        "192.168.1.20:8900",
        "0.0.0.0:8900",
        "127.0.0.1:junk",
        "",
    ],
)
def test_without_a_token_another_host_is_refused(host: str) -> None:
    refusal = control_refusal({"host": host}, PORT, None)
    assert refusal is not None
    assert "control token" in refusal


def test_port_80_may_be_left_out() -> None:
    assert control_refusal({"host": "localhost"}, 80, None) is None


@pytest.mark.parametrize(
    ("origin", "refused"),
    [
        (None, False),  # not a browser, or a same-origin GET
        ("http://127.0.0.1:8900", False),
        ("http://evil.example", True),
        ("http://127.0.0.1:3000", True),  # a dev server on this machine is another origin
        ("null", True),  # a sandboxed frame or a file:// page
    ],
)
def test_a_web_page_of_another_origin_is_refused(origin: str | None, refused: bool) -> None:
    headers = {"host": "127.0.0.1:8900"} | ({"origin": origin} if origin else {})
    assert (control_refusal(headers, PORT, None) is not None) is refused
    with_token = headers | {"authorization": f"Bearer {TOKEN}"}
    assert (control_refusal(with_token, PORT, TOKEN) is not None) is refused


@pytest.mark.parametrize("host", ["127.0.0.1:8900", "emulator.internal:8900"])
def test_with_a_token_the_token_is_required_and_enough(host: str) -> None:
    assert control_refusal({"host": host, "authorization": f"Bearer {TOKEN}"}, PORT, TOKEN) is None
    for wrong in ({}, {"authorization": "Bearer nope"}, {"authorization": TOKEN + "x"}):
        refusal = control_refusal({"host": host, **wrong}, PORT, TOKEN)
        assert refusal is not None
        assert TOKEN not in refusal


@pytest.mark.parametrize(
    ("value", "length"), [(None, 0), ("", 0), ("0", 0), ("12", 12), (str(MAX_BODY_BYTES),) * 2]
)
def test_declared_lengths(value: str | None, length: int | str) -> None:
    assert declared_length(value) == int(length)


def test_a_declared_length_past_the_cap_is_refused_unread() -> None:
    with pytest.raises(BodyTooLarge):
        declared_length(str(MAX_BODY_BYTES + 1))


@pytest.mark.parametrize("value", ["-1", "abc", "1e3", "0x10", "+5"])
def test_a_junk_length_is_an_error(value: str) -> None:
    with pytest.raises(ValueError, match="not a number"):
        declared_length(value)
