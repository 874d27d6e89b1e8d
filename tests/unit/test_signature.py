"""The webhook signature: hex HMAC-SHA256 of the raw body under any configured secret."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from dbt_tableau_relay.webhooks import sign, verify_signature, well_formed

BODY = b'{\n  "eventId": "wev_1"\n}'
SECRET = b"old-secret"
NEW_SECRET = b"new-secret"


def hexmac(secret: bytes, body: bytes = BODY) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def test_sign_is_dbts_lowercase_hex_hmac_sha256() -> None:
    assert sign(BODY, "old-secret") == hexmac(SECRET)
    assert sign(BODY, SECRET) == hexmac(SECRET)


def test_good_signature_verifies() -> None:
    assert verify_signature(BODY, hexmac(SECRET), [SECRET])


def test_signature_of_other_bytes_fails() -> None:
    """Signed over the exact bytes: re-serialised JSON is a different body."""
    assert not verify_signature(b'{"eventId":"wev_1"}', hexmac(SECRET), [SECRET])


def test_wrong_secret_fails() -> None:
    assert not verify_signature(BODY, hexmac(b"someone-else"), [SECRET])


@pytest.mark.parametrize("header", [None, "", "   ", "sha256", "not-hex", "0" * 64])
def test_missing_or_garbage_header_fails(header: str | None) -> None:
    assert not verify_signature(BODY, header, [SECRET])


def test_uppercase_hex_verifies() -> None:
    assert verify_signature(BODY, hexmac(SECRET).upper(), [SECRET])


def test_surrounding_whitespace_is_tolerated() -> None:
    assert verify_signature(BODY, f"  {hexmac(SECRET)}\t", [SECRET])


def test_truncated_signature_fails() -> None:
    assert not verify_signature(BODY, hexmac(SECRET)[:-1], [SECRET])


@pytest.mark.parametrize("signed_with", [SECRET, NEW_SECRET])
def test_either_secret_verifies_during_rotation(signed_with: bytes) -> None:
    assert verify_signature(BODY, hexmac(signed_with), [SECRET, NEW_SECRET])


def test_no_secrets_verifies_nothing() -> None:
    assert not verify_signature(BODY, hexmac(b""), [])


def test_non_ascii_header_fails_instead_of_raising() -> None:
    assert not verify_signature(BODY, "é" * 64, [SECRET])


def test_every_secret_is_checked_even_after_a_match(monkeypatch: pytest.MonkeyPatch) -> None:
    """No early exit: timing does not reveal which secret (or whether the first) matched."""
    calls: list[bytes] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(a)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    assert verify_signature(BODY, hexmac(SECRET), [SECRET, NEW_SECRET, b"third"])
    assert len(calls) == 3


@pytest.mark.parametrize(
    ("header", "shaped"),
    [
        ("0123456789abcdef" * 4, True),
        ("0123456789ABCDEF" * 4, True),  # either case, as verify_signature takes it
        ("0123456789aBcDeF" * 4, True),
        (" \t" + "a" * 64 + " ", True),  # surrounding whitespace, likewise
        ("a" * 63, False),
        ("a" * 65, False),
        ("sha256=" + "a" * 64, False),  # GitHub's style: dbt Cloud never sends it
        ("g" * 64, False),
        ("a" * 32 + " " + "a" * 31, False),
        ("\uff10" * 64, False),  # fullwidth digits are not hex here
        ("", False),
        ("a" * 100_000, False),
    ],
)
def test_only_64_hex_characters_can_be_a_signature(header: str, shaped: bool) -> None:
    assert well_formed(header) is shaped


def test_every_signature_sign_makes_is_well_formed() -> None:
    assert well_formed(sign(BODY, SECRET))
