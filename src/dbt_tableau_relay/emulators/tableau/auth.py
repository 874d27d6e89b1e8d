"""Sign-in and sessions: personal access tokens, username/password, connected-app JWTs.

Like Tableau, one personal access token holds one session: signing in with it
again ends every earlier session of that token (their next call gets 401002).
Sessions end `session_ttl` seconds after sign-in. A connected-app JWT is
checked as Tableau's direct trust does: HS256 signed with the secret value,
header `kid` = secret id and `iss` = client id, claims `iss` = client id,
`aud` = "tableau", `exp` in the future but at most 10 minutes ahead, a `jti`
not seen before, `sub` = a known user, and `scp` a list of "tableau:" scopes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dbt_tableau_relay.emulators.tableau.protocol import ApiError, bad_request

logger = logging.getLogger(__name__)

PAT_LIFETIME = 15 * 24 * 3600.0  # Tableau Cloud expires a PAT after 15 days unused
_JWT_MAX_AHEAD = 600.0 + 60.0  # exp at most 10 minutes out, with a minute of clock skew


def signin_error() -> ApiError:
    return ApiError(401, "401001", "Signin Error", "Error signing in to Tableau Server")


def user_luid(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"dbt-tableau-relay/emulator/user/{name}"))


@dataclass(frozen=True)
class ConnectedApp:
    client_id: str
    secret_id: str
    secret_value: str


@dataclass(frozen=True)
class Session:
    token: str
    method: str  # "pat", "password" or "jwt"
    user_name: str
    pat_name: str | None
    expires_at: float

    @property
    def user_luid(self) -> str:
        return user_luid(self.user_name)


class Auth:
    """Credentials the site accepts and the sessions it has handed out. Not locked."""

    def __init__(
        self,
        *,
        site: str,
        site_luid: str,
        pat_name: str,
        pat_secret: str,
        users: Mapping[str, str],
        connected_app: ConnectedApp | None,
        session_ttl: float,
    ) -> None:
        self.site = site
        self.site_luid = site_luid
        self.pat_name = pat_name
        self._pat_secret = pat_secret
        self._pat_owner = next(iter(users), "relay")
        self._pat_expires_at = time.time() + PAT_LIFETIME
        self._users = dict(users)
        self._app = connected_app
        self.session_ttl = session_ttl
        # Whether the PAT's owner is a site administrator (Query Jobs answers 403 if not).
        self.pat_admin = True
        self._sessions: dict[str, Session] = {}
        self.issued: list[str] = []  # every token ever handed out, for leak tests
        self._seen_jtis: set[str] = set()

    def sign_in(self, credentials: Mapping[str, Any]) -> Session:
        """A new session for valid credentials; ApiError 400000/401001 otherwise."""
        site = credentials.get("site")
        if not isinstance(site, Mapping) or site.get("contentUrl", "") != self.site:
            raise signin_error()
        if "personalAccessTokenName" in credentials and "name" in credentials:
            raise bad_request(
                "The request contains both username/password and a personal access token."
            )
        if "personalAccessTokenName" in credentials:
            return self._pat_sign_in(credentials)
        if "jwt" in credentials:
            return self._new_session("jwt", self._jwt_user(str(credentials["jwt"])), None)
        if "name" in credentials:
            return self._password_sign_in(credentials)
        raise bad_request("The credentials element is missing or incomplete.")

    def check(self, token: str | None) -> Session:
        if token is None:
            raise ApiError(
                401, "401000", "Unauthorized Access", "No authentication credentials were provided."
            )
        session = self._sessions.get(token)
        if session is None or session.expires_at <= time.time():
            self._sessions.pop(token, None)
            raise ApiError(
                401,
                "401002",
                "Unauthorized Access",
                "Invalid authentication credentials were provided.",
            )
        return session

    def sign_out(self, token: str) -> None:
        self._sessions.pop(token, None)

    def invalidate_all(self) -> None:
        self._sessions.clear()

    def pat_time_left(self) -> str:
        """estimatedTimeToExpiration as Tableau writes it: hours:minutes:seconds."""
        left = max(0, int(self._pat_expires_at - time.time()))
        return f"{left // 3600}:{left % 3600 // 60:02d}:{left % 60:02d}"

    def _pat_sign_in(self, credentials: Mapping[str, Any]) -> Session:
        name = credentials.get("personalAccessTokenName")
        secret = str(credentials.get("personalAccessTokenSecret", ""))
        if name != self.pat_name or not hmac.compare_digest(secret, self._pat_secret):
            raise signin_error()
        # One session per PAT: the new sign-in ends the earlier ones.
        for token in [t for t, s in self._sessions.items() if s.pat_name == name]:
            del self._sessions[token]
        return self._new_session("pat", self._pat_owner, self.pat_name)

    def _password_sign_in(self, credentials: Mapping[str, Any]) -> Session:
        name = str(credentials.get("name", ""))
        expected = self._users.get(name)
        if expected is None or not hmac.compare_digest(
            str(credentials.get("password", "")), expected
        ):
            raise signin_error()
        return self._new_session("password", name, None)

    def _new_session(self, method: str, user: str, pat_name: str | None) -> Session:
        # Shaped like a Tableau Cloud token: two random parts and the site LUID.
        token = f"{secrets.token_urlsafe(16)}|{secrets.token_urlsafe(24)}|{self.site_luid}"
        session = Session(token, method, user, pat_name, time.time() + self.session_ttl)
        self._sessions[token] = session
        self.issued.append(token)
        return session

    def _jwt_user(self, token: str) -> str:
        if self._app is None:
            raise signin_error()
        try:
            claims = _verified_claims(token, self._app)
            user = self._check_claims(claims, self._app)
        except _JwtRejected as exc:
            logger.info("emulator.jwt_rejected reason=%s", exc)
            raise signin_error() from None
        self._seen_jtis.add(str(claims["jti"]))
        return user

    def _check_claims(self, claims: Mapping[str, Any], app: ConnectedApp) -> str:
        now = time.time()
        _require(claims.get("iss") == app.client_id, "iss is not the client id")
        aud = claims.get("aud")
        _require(
            aud == "tableau" or (isinstance(aud, list) and "tableau" in aud), "aud is not tableau"
        )
        exp = claims.get("exp")
        _require(
            isinstance(exp, int | float) and now < exp <= now + _JWT_MAX_AHEAD, "exp is invalid"
        )
        jti = claims.get("jti")
        _require(
            isinstance(jti, str) and bool(jti) and jti not in self._seen_jtis,
            "jti missing or reused",
        )
        scopes = claims.get("scp")
        _require(
            isinstance(scopes, list)
            and bool(scopes)
            and all(str(s).startswith("tableau:") for s in scopes),
            "scp must be a list of tableau: scopes",
        )
        sub = claims.get("sub")
        _require(isinstance(sub, str) and sub in self._users, "sub is not a user of the site")
        return str(sub)


class _JwtRejected(Exception):
    pass


def _require(condition: bool, reason: str) -> None:
    if not condition:
        raise _JwtRejected(reason)


def _verified_claims(token: str, app: ConnectedApp) -> dict[str, Any]:
    parts = token.split(".")
    _require(len(parts) == 3, "not a JWS compact token")
    header, claims = _b64_json(parts[0]), _b64_json(parts[1])
    _require(header.get("alg") == "HS256", "alg is not HS256")
    _require(header.get("kid") == app.secret_id, "kid is not the secret id")
    _require(header.get("iss") == app.client_id, "header iss is not the client id")
    signed = f"{parts[0]}.{parts[1]}".encode()
    expected = hmac.new(app.secret_value.encode(), signed, hashlib.sha256).digest()
    _require(hmac.compare_digest(expected, _b64_bytes(parts[2])), "bad signature")
    return claims


def _b64_bytes(part: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise _JwtRejected("not base64url") from None


def _b64_json(part: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64_bytes(part))
    except ValueError:
        raise _JwtRejected("not JSON") from None
    _require(isinstance(value, dict), "not a JSON object")
    return dict(value)
