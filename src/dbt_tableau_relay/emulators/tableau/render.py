"""Answers as Tableau writes them: one element tree, rendered as XML or JSON.

Handlers build an `El` tree; `render()` turns it into the bytes of a
`tsResponse` (XML, the default) or Tableau's JSON (when the request's Accept
header asks for application/json). Tableau's JSON maps attributes to string
keys, child elements to nested objects, repeated children (`workbooks` ->
`workbook`) to a list, an element with only text to a string, and an element
with attributes and text to `{"value": text, ...attributes}`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape, quoteattr

NAMESPACE = "http://tableau.com/api"
XSD = "https://help.tableau.com/samples/en-us/rest_api/ts-api_3_27.xsd"
XML_TYPE = "application/xml;charset=utf-8"
JSON_TYPE = "application/json;charset=utf-8"
HTML_TYPE = "text/html;charset=utf-8"

_ROOT_OPEN = (
    "<?xml version='1.0' encoding='UTF-8'?>"
    f'<tsResponse xmlns="{NAMESPACE}" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    f'xsi:schemaLocation="{NAMESPACE} {XSD}">'
)


@dataclass
class El:
    """One XML element; `many` marks a list container such as `<workbooks>`."""

    tag: str
    attrs: dict[str, str] = field(default_factory=dict)
    children: list[El] = field(default_factory=list)
    text: str | None = None
    many: bool = False


def el(tag: str, *children: El, text: str | None = None, **attrs: str | None) -> El:
    """An element; attributes given as None are left out, as Tableau omits them."""
    kept = {k: v for k, v in attrs.items() if v is not None}
    return El(tag, kept, list(children), text)


def many(tag: str, children: list[El]) -> El:
    return El(tag, {}, children, many=True)


def timestamp(at: float | None) -> str | None:
    """Tableau's timestamps: UTC, whole seconds, a Z suffix."""
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def render(elements: list[El], as_json: bool) -> tuple[bytes, str]:
    """The body and Content-Type of a `tsResponse` holding `elements`."""
    if as_json:
        body = {e.tag: _json_value(e) for e in elements}
        return json.dumps(body, separators=(",", ":")).encode(), JSON_TYPE
    inner = "".join(_xml(e) for e in elements)
    return f"{_ROOT_OPEN}{inner}</tsResponse>".encode(), XML_TYPE


def error_body(code: str, summary: str, detail: str, as_json: bool) -> tuple[bytes, str]:
    """Tableau's error answer; JSON keeps Tableau's key order (summary, detail, code)."""
    if as_json:
        payload = {"error": {"summary": summary, "detail": detail, "code": code}}
        return json.dumps(payload, separators=(",", ":")).encode(), JSON_TYPE
    return render(
        [el("error", el("summary", text=summary), el("detail", text=detail), code=code)], False
    )


def html_429(retry_after: float) -> bytes:
    """Tableau Cloud's gateway answers an overload with HTML, not a tsResponse."""
    return (
        "<html>\r\n<head><title>429 Too Many Requests</title></head>\r\n<body>\r\n"
        "<center><h1>429 Too Many Requests</h1></center>\r\n"
        f"<!-- retry after {retry_after:g} s -->\r\n</body>\r\n</html>\r\n"
    ).encode()


def _xml(e: El) -> str:
    attrs = "".join(f" {k}={quoteattr(v)}" for k, v in e.attrs.items())
    if not e.children and e.text is None:
        return f"<{e.tag}{attrs}/>"
    inner = escape(e.text or "") + "".join(_xml(c) for c in e.children)
    return f"<{e.tag}{attrs}>{inner}</{e.tag}>"


def _json_value(e: El) -> Any:
    if e.many:
        return {e.children[0].tag: [_json_value(c) for c in e.children]} if e.children else {}
    if e.text is not None and not e.children:
        return {"value": e.text, **e.attrs} if e.attrs else e.text
    out: dict[str, Any] = {c.tag: _json_value(c) for c in e.children}
    out.update(e.attrs)
    return out
