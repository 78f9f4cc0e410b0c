"""The notification settings parser (operator_app/notify/settings.py): the seed's names and the
HEADWIND_ forms, event filters, and errors that name the variable but never repeat a URL."""

from __future__ import annotations

import pytest

from operator_app.notify.notice import Event
from operator_app.notify.settings import (
    ALL_EVENTS,
    EventFilterError,
    NotifyConfigError,
    from_environ,
    parse_events,
)

SLACK = "https://hooks.slack.example/services/T000/B000/s3cr3tvalue"
TEAMS = "https://prod.workflows.example/workflows/abc/triggers/manual/paths/invoke?sig=s3cr3t"


def test_nothing_configured_means_no_channel():
    config = from_environ({})
    assert config.channels == {}
    assert (config.dashboard_url, config.webhook_secret) == ("", "")
    assert (config.max_attempts, config.storm_threshold, config.storm_window) == (6, 5, 60)


def test_the_seeds_names_and_the_prefixed_ones_prefixed_winning():
    config = from_environ({"SLACK_WEBHOOK_URL": SLACK, "TEAMS_WEBHOOK_URL": TEAMS,
                           "WEBHOOK_URL": "http://receiver.team-a.svc:8080/hook",
                           "WEBHOOK_SECRET": "old", "HEADWIND_WEBHOOK_SECRET": "new",
                           "HEADWIND_TEAMS_WEBHOOK_URL": "https://other.example/teams"})
    assert list(config.channels) == ["slack", "teams", "webhook"]
    assert config.slack.url == SLACK and config.slack.source == "SLACK_WEBHOOK_URL"
    assert config.teams.url == "https://other.example/teams"
    assert config.teams.source == "HEADWIND_TEAMS_WEBHOOK_URL"
    assert config.webhook_secret == "new"


def test_urls_and_secrets_stay_out_of_repr():
    config = from_environ({"SLACK_WEBHOOK_URL": SLACK, "WEBHOOK_URL": "https://r.example/h",
                           "WEBHOOK_SECRET": "topsecret"})
    text = repr(config)
    assert "s3cr3t" not in text and "topsecret" not in text and "r.example" not in text


def test_enabled_false_turns_a_configured_channel_off():
    config = from_environ({"SLACK_WEBHOOK_URL": SLACK, "SLACK_ENABLED": "false"})
    assert config.slack is None
    config = from_environ({"SLACK_WEBHOOK_URL": SLACK, "SLACK_ENABLED": "false",
                           "HEADWIND_SLACK_ENABLED": "true"})
    assert config.slack is not None
    with pytest.raises(NotifyConfigError, match="SLACK_ENABLED='maybe'"):
        from_environ({"SLACK_WEBHOOK_URL": SLACK, "SLACK_ENABLED": "maybe"})


@pytest.mark.parametrize("url, why", [
    ("ftp://files.example/x", "not an http(s) URL"),
    ("hooks.slack.com/services/x", "not an http(s) URL"),
    ("https:///nohost", "has no host"),
    ("https://user:s3cr3t@hooks.example/x", "credentials"),
    ("https://hooks.example/a b", "whitespace"),
    ("https://hooks.example:99999/x", "not a valid URL"),
    ("https://hooks.example/" + "a" * 3000, "longer than 3000"),
])
def test_a_bad_url_names_the_variable_but_not_the_url(url, why):
    with pytest.raises(NotifyConfigError) as caught:
        from_environ({"HEADWIND_SLACK_WEBHOOK_URL": url})
    message = str(caught.value)
    assert message.startswith("HEADWIND_SLACK_WEBHOOK_URL: ") and why in message
    assert "s3cr3t" not in message and "hooks" not in message


def test_dashboard_url_and_its_seed_fallback():
    assert from_environ({"HEADWIND_DASHBOARD_URL": "https://hw.example/"}).dashboard_url == \
        "https://hw.example"
    assert from_environ({"HEADWIND_UI_URL": "https://ui.example"}).dashboard_url == \
        "https://ui.example"
    with pytest.raises(NotifyConfigError, match="HEADWIND_DASHBOARD_URL"):
        from_environ({"HEADWIND_DASHBOARD_URL": "javascript:alert(1)"})


def test_per_channel_event_filters():
    config = from_environ({"SLACK_WEBHOOK_URL": SLACK, "TEAMS_WEBHOOK_URL": TEAMS,
                           "HEADWIND_SLACK_EVENTS": "request_created, update_failed",
                           "HEADWIND_TEAMS_EVENTS": "-update_detected"})
    assert config.slack.events == {Event.REQUEST_CREATED, Event.UPDATE_FAILED}
    assert config.slack.wants(Event.UPDATE_FAILED) and not config.slack.wants(Event.ROLLED_OUT)
    assert config.teams.events == ALL_EVENTS - {Event.UPDATE_DETECTED}
    with pytest.raises(NotifyConfigError, match="HEADWIND_SLACK_EVENTS: unknown event oops"):
        from_environ({"SLACK_WEBHOOK_URL": SLACK, "HEADWIND_SLACK_EVENTS": "oops"})


def test_parse_events():
    assert parse_events(None) == parse_events("") == parse_events(" all ") == ALL_EVENTS
    assert parse_events("ROLLED_OUT") == {Event.ROLLED_OUT}
    with pytest.raises(EventFilterError, match="not both"):
        parse_events("rolled_out,-update_failed")


@pytest.mark.parametrize("name, value, message", [
    ("HEADWIND_NOTIFY_MAX_ATTEMPTS", "0", "between 1 and 20"),
    ("HEADWIND_NOTIFY_MAX_ATTEMPTS", "three", "whole number"),
    ("HEADWIND_NOTIFY_STORM_THRESHOLD", "0", "between 1 and 1000"),
    ("HEADWIND_NOTIFY_STORM_WINDOW", "1", "between 5 and 3600"),
    ("HEADWIND_NOTIFY_CA_FILE", "/nonexistent/ca.pem", "no such file"),
])
def test_numbers_and_files_are_checked(name, value, message):
    with pytest.raises(NotifyConfigError, match=f"{name}.*{message}"):
        from_environ({name: value})


def test_django_settings_hold_the_parsed_value():
    from django.conf import settings

    from operator_app.notify.settings import NotifySettings

    assert isinstance(settings.HEADWIND_NOTIFY, NotifySettings)
