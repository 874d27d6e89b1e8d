"""The notifier's pure parts: what an answer means, scrubbing URLs, config, status classes."""

from __future__ import annotations

import random

import pytest

from dbt_tableau_relay.config import NotifyChannel, parse_settings
from dbt_tableau_relay.errors import ConfigError, TableauError, TransientTableauError
from dbt_tableau_relay.metrics import status_class
from dbt_tableau_relay.notifier import Delivery, decide, scrub
from dbt_tableau_relay.retry import RetryPolicy

POLICY = RetryPolicy(max_attempts=5, base_delay=2.0, max_delay=60.0)


@pytest.mark.parametrize(
    ("status", "attempts", "outcome"),
    [
        (200, 1, "sent"),
        (202, 1, "sent"),  # Teams workflows answer 202 Accepted
        (204, 3, "sent"),
        (500, 1, "retry"),
        (503, 4, "retry"),
        (503, 5, "failed"),  # the last attempt
        (None, 1, "retry"),  # no answer: refused, reset, timed out
        (429, 1, "retry"),
        (408, 1, "retry"),
        (400, 1, "failed"),  # a refused body will be refused again
        (403, 1, "failed"),
        (404, 1, "failed"),  # a deleted Slack webhook
        (301, 1, "failed"),  # redirects are not followed
    ],
)
def test_what_an_answer_means(status: int | None, attempts: int, outcome: str) -> None:
    assert decide(Delivery(status), attempts, POLICY)[0] == outcome


def test_retries_back_off_within_the_policys_ceiling() -> None:
    rng_delays = [decide(Delivery(500), n, POLICY)[1] for n in range(1, 5)]
    ceilings = [2.0, 4.0, 8.0, 16.0]
    assert all(0 <= d <= c for d, c in zip(rng_delays, ceilings, strict=True))


def test_a_retry_after_is_honoured() -> None:
    random.seed(1)
    assert decide(Delivery(429, retry_after=30.0), 1, POLICY) == ("retry", 30.0)


SLACK = "http://127.0.0.1:9/services/T0/B0/xoxb-secret"
SIGNED = "https://prod.logic.azure.com/workflows/1/triggers?sig=xoxb-secret&sv=1"


@pytest.mark.parametrize(
    ("url", "text"),
    [
        (SLACK, f"ConnectError: {SLACK}"),
        (SLACK, "no such path /services/T0/B0/xoxb-secret"),
        (SIGNED, "query sig=xoxb-secret&sv=1 refused"),
    ],
)
def test_scrub_cuts_the_url_its_path_and_query(url: str, text: str) -> None:
    scrubbed = scrub(text, url)
    assert "xoxb-secret" not in scrubbed
    assert "<channel url>" in scrubbed


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (None, "2xx"),
        (TableauError("not found", status=404), "4xx"),
        (TableauError("409093", code="409093", status=409), "4xx"),
        (TransientTableauError("busy", status=503), "5xx"),
        (TransientTableauError("did not answer in time"), "error"),
    ],
)
def test_status_class(error: TableauError | None, expected: str) -> None:
    assert status_class(error) == expected


# -- notify: in relay.yml --------------------------------------------------------------

BASE = "tableau:\n  server_url: https://t.example.com\n  token_name: n\n  token_secret: s\n"


def test_notify_channels_parse_with_default_triggers() -> None:
    text = BASE + (
        "notify:\n"
        "  - slack: \"{{ env_var('SLACK_URL') }}\"\n"
        "  - teams: https://prod.westeurope.logic.azure.com/workflows/abc\n"
        "  - webhook: https://hooks.example.com/relay\n"
        "    on: [failed, dead, succeeded]\n"
        "public_url: https://relay.example.com/\n"
    )
    settings = parse_settings(text, {"SLACK_URL": "https://hooks.slack.com/services/T/B/x"})
    assert [(c.kind, c.on) for c in settings.notify] == [
        ("slack", ("failed", "dead")),
        ("teams", ("failed", "dead")),
        ("webhook", ("failed", "dead", "succeeded")),
    ]
    assert settings.notify[0].url == "https://hooks.slack.com/services/T/B/x"
    assert settings.public_url == "https://relay.example.com"


def test_a_channel_url_is_hidden_in_reprs() -> None:
    channel = NotifyChannel.model_validate({"slack": "https://hooks.slack.com/services/T/B/xyz"})
    assert "xyz" not in repr(channel)
    assert "xyz" not in str(channel.model_dump())


def test_on_may_be_a_single_trigger() -> None:
    assert NotifyChannel.model_validate({"webhook": "https://h.example", "on": "dead"}).on == (
        "dead",
    )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("  - {}\n", "exactly one of slack, teams, webhook"),
        ("  - {slack: 'https://a.example', teams: 'https://b.example'}\n", "exactly one"),
        ("  - {slack: 'hooks.slack.com/services/T/B/xyz'}\n", "slack: not an http"),
        ("  - {webhook: ''}\n", "webhook: not an http"),
        ("  - {webhook: 'https://h.example', on: [failed, finished]}\n", "notify.0.on"),
        ("  - {webhook: 'https://h.example', on: []}\n", "at least one"),
        ("  - {webhook: 'https://h.example', url: 'x'}\n", "unknown key"),
    ],
)
def test_bad_channels_are_refused_without_echoing_the_url(entry: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_settings(BASE + "notify:\n" + entry, {})
    assert "xyz" not in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"), [("''", None), ("https://r.example/", "https://r.example")]
)
def test_public_url(value: str, expected: str | None) -> None:
    assert parse_settings(BASE + f"public_url: {value}\n", {}).public_url == expected


def test_public_url_must_be_http() -> None:
    with pytest.raises(ConfigError, match="public_url"):
        parse_settings(BASE + "public_url: relay.example.com\n", {})
