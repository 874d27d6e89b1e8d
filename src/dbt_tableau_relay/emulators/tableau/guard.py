"""Who may drive the emulator's control plane, and how large a request body may be.

The emulator runs on people's machines for demos, beside a browser. Without
these checks any web page could reset it or inject faults through that
browser (a form post, or DNS rebinding), and one request could hand it a body
of any size to hold in memory.

`/_emulator/` calls are refused (403) unless:

- with a control token set (`Emulator(control_token=...)`, `--control-token`):
  they carry `Authorization: Bearer <token>`;
- without one: their `Host` is a loopback name (127.0.0.0/8, ::1, localhost)
  with the emulator's own port, as only a client on this machine sends;

and, either way, an `Origin` they carry is the emulator's own (a browser
sends one with every cross-site POST). Every request's body is capped at
`MAX_BODY_BYTES` (413).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

MAX_BODY_BYTES: Final = 1024 * 1024


class BodyTooLarge(Exception):
    """The request's body is over `MAX_BODY_BYTES`, declared or as it streamed in."""


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def control_refusal(headers: Mapping[str, str], port: int, token: str | None) -> str | None:
    """Why a `/_emulator/` call is refused, or None to serve it. `headers`: lower-cased names."""
    host = headers.get("host", "")
    if token:
        given = headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            return "control calls need Authorization: Bearer <the emulator's control token>"
    elif not _own_loopback(host, port):
        return (
            f"control calls are served only for Host 127.0.0.1:{port} or localhost:{port},"
            f" not {host or '(none)'}: start the emulator with a control token to drive it"
            " from elsewhere"
        )
    origin = headers.get("origin")
    if origin is not None and urlsplit(origin).netloc.lower() != host.lower():
        return f"control calls from a web page of another origin ({origin}) are refused"
    return None


def _own_loopback(host: str, port: int) -> bool:
    """`Host` names this machine and this emulator's port (80 may be left out)."""
    parts = urlsplit(f"//{host}")
    try:
        given_port = parts.port or 80
    except ValueError:  # not a port number
        return False
    return given_port == port and is_loopback(parts.hostname or "")


def declared_length(value: str | None) -> int:
    """`Content-Length` as a number of bytes; BodyTooLarge past the cap, ValueError if junk."""
    if value is None or not value.strip():
        return 0
    if not value.strip().isdigit():
        raise ValueError(f"Content-Length {value!r} is not a number of bytes")
    length = int(value)
    if length > MAX_BODY_BYTES:
        raise BodyTooLarge
    return length
