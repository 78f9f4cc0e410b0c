"""Routing: the global channels, narrowed or widened by headwind.sh/notify (the grammar in
operator_app/notify/routing.py), and headwind.sh/notify-events."""

from __future__ import annotations

import pytest

from operator_app.notify.notice import Event, Notice
from operator_app.notify.routing import AnnotationError, Destination, parse_notify, route
from operator_app.notify.settings import from_environ

ALL_THREE = from_environ({"SLACK_WEBHOOK_URL": "https://s.example/x",
                          "TEAMS_WEBHOOK_URL": "https://t.example/x",
                          "WEBHOOK_URL": "https://w.example/x"})
SLACK, TEAMS, WEBHOOK = Destination("slack"), Destination("teams"), Destination("webhook")


def notice(event=Event.UPDATE_APPLIED, **annotations) -> Notice:
    return Notice(event=event, kind="Deployment", namespace="team-a", name="web", slot="app",
                  from_ref="reg/app:1.0.0", to_ref="reg/app:1.1.0",
                  annotations={f"headwind.sh/{k.replace('_', '-')}": v
                               for k, v in annotations.items()})


def destinations(config=ALL_THREE, **annotations) -> list[Destination]:
    return list(route(notice(**annotations), config).destinations)


def test_no_annotation_means_every_global_channel():
    assert destinations() == [SLACK, TEAMS, WEBHOOK]
    assert destinations(from_environ({})) == []


@pytest.mark.parametrize("value, expected", [
    ("slack,webhook", [SLACK, WEBHOOK]),  # only these
    (" Slack ", [SLACK]),
    ("-teams", [SLACK, WEBHOOK]),  # all but
    ("-teams,-slack", [WEBHOOK]),
    ("none", []),
    ("all", [SLACK, TEAMS, WEBHOOK]),
    # a team's own Slack instead of the global one, and in addition to every global channel
    ("slack=secret:team-a-slack", [Destination("slack", "team-a-slack")]),
    ("all,slack=secret:team-a-slack",
     [SLACK, TEAMS, WEBHOOK, Destination("slack", "team-a-slack")]),
    ("-teams,webhook=secret:hooks.team-a",
     [SLACK, WEBHOOK, Destination("webhook", "hooks.team-a")]),
    ("teams, webhook = secret: hook", [TEAMS, Destination("webhook", "hook")]),
])
def test_the_annotation_narrows_or_widens(value, expected):
    routed = route(notice(notify=value), ALL_THREE)
    assert list(routed.destinations) == expected
    assert routed.problem == ""


@pytest.mark.parametrize("value, why", [
    ("email", "unknown channel 'email'"),
    ("slack,,teams", "empty item"),
    ("slack,slack", "listed twice"),
    ("none,slack", "'none' cannot be combined"),
    ("slack,-slack", "both listed and excluded"),
    ("slack,-teams", "not both"),
    ("slack=team-a-slack", "expected slack=secret:<name>"),
    ("slack=secret:Team_A", "not a Secret name"),
    ("slack=secret:", "not a Secret name"),
    (",".join(f"slack=secret:s{i}" for i in range(11)), "more than 10 items"),
])
def test_an_invalid_annotation_is_reported_and_the_global_channels_are_used(value, why):
    with pytest.raises(AnnotationError, match=why):
        parse_notify(value)
    routed = route(notice(notify=value), ALL_THREE)
    assert list(routed.destinations) == [SLACK, TEAMS, WEBHOOK]
    assert "headwind.sh/notify on Deployment team-a/web ignored" in routed.problem
    assert why.split("'")[0] in routed.problem


def test_a_named_channel_that_is_not_configured_is_reported():
    only_slack = from_environ({"SLACK_WEBHOOK_URL": "https://s.example/x"})
    routed = route(notice(notify="slack,teams"), only_slack)
    assert list(routed.destinations) == [SLACK]
    assert routed.problem == ("headwind.sh/notify on Deployment team-a/web names teams, which "
                              "is not configured")


def test_global_event_filters_apply_to_global_channels_only():
    config = from_environ({"SLACK_WEBHOOK_URL": "https://s.example/x",
                           "WEBHOOK_URL": "https://w.example/x",
                           "HEADWIND_SLACK_EVENTS": "update_failed"})
    assert destinations(config) == [WEBHOOK]
    assert list(route(notice(Event.UPDATE_FAILED), config).destinations) == [SLACK, WEBHOOK]
    assert destinations(config, notify="all,slack=secret:mine") == \
        [WEBHOOK, Destination("slack", "mine")]


def test_notify_events_narrows_every_destination_of_the_target():
    assert destinations(notify_events="update_failed") == []
    assert list(route(notice(Event.UPDATE_FAILED, notify_events="update_failed,rolled_out"),
                      ALL_THREE).destinations) == [SLACK, TEAMS, WEBHOOK]
    assert destinations(notify="slack=secret:mine", notify_events="-update_applied") == []
    routed = route(notice(notify_events="bogus"), ALL_THREE)
    assert list(routed.destinations) == [SLACK, TEAMS, WEBHOOK]
    assert "notify-events: unknown event bogus" in routed.problem


def test_destination_labels_and_keys_carry_no_url():
    team = Destination("slack", "team-a-slack")
    assert team.label("team-a") == "slack (Secret team-a/team-a-slack)"
    assert team.key("team-a") == "slack@team-a/team-a-slack"
    assert SLACK.label("team-a") == SLACK.key("team-a") == "slack"
