"""What a handler sees and gives back: a parsed request, a reply, a Tableau error."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml.ElementTree import fromstring

from dbt_tableau_relay.emulators.tableau.render import El


class ApiError(Exception):
    """A Tableau error answer: HTTP status and Tableau's six-digit code."""

    def __init__(self, status: int, code: str, summary: str, detail: str) -> None:
        super().__init__(f"{code}: {summary}: {detail}")
        self.status = status
        self.code = code
        self.summary = summary
        self.detail = detail


def bad_request(detail: str) -> ApiError:
    return ApiError(400, "400000", "Bad Request", detail)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes = b""

    @property
    def wants_json(self) -> bool:
        return "application/json" in self.headers.get("accept", "").lower()

    @property
    def token(self) -> str | None:
        return self.headers.get("x-tableau-auth") or None

    def payload(self) -> dict[str, Any] | None:
        """The body as a dict shaped like Tableau's JSON; None when empty.

        An XML `<tsRequest>` becomes the same shape as the JSON form:
        `{"credentials": {"personalAccessTokenName": .., "site": {..}}}`.
        """
        text = self.body.strip()
        if not text:
            return None
        if "json" in self.headers.get("content-type", "").lower() or text.startswith(b"{"):
            return _json_payload(text)
        return _xml_payload(text)


@dataclass
class Reply:
    """A success answer: elements inside `<tsResponse>`, or no body (204)."""

    status: int = 200
    elements: list[El] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)


def _json_payload(text: bytes) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        raise bad_request("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise bad_request("The request body must be a JSON object.")
    return data


def _xml_payload(text: bytes) -> dict[str, Any]:
    try:
        root = fromstring(text)
    except ParseError:
        raise bad_request("The request body contains malformed XML.") from None
    if _local(root.tag) != "tsRequest":
        raise bad_request("The request body must be a tsRequest element.")
    return {_local(child.tag): _as_dict(child) for child in root}


def _as_dict(element: Element) -> dict[str, Any]:
    out: dict[str, Any] = {_local(child.tag): _as_dict(child) for child in element}
    out.update(element.attrib)
    return out


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]
