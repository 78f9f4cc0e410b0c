"""The admin's Notifications page: linked from the index, staff only, lists the configured
channels without their URLs, and its CSRF-protected button really sends a test notification to
a local sink standing in for the channel, reporting success or the scrubbed error."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from prometheus_client import REGISTRY

from operator_app.notify.settings import from_environ
from operator_app.notify.signature import verify

from .test_notify_support import Answer, Sink

pytestmark = pytest.mark.django_db

PAGE = "/admin/approvals/updaterequest/notifications/"
TOKEN = "s3cr3t-token"


@pytest.fixture
def sinks():
    with Sink() as slack, Sink() as teams, Sink() as hook:
        yield {"slack": slack, "teams": teams, "webhook": hook}


@pytest.fixture
def configured(settings, sinks):
    settings.HEADWIND_NOTIFY = from_environ({
        "SLACK_WEBHOOK_URL": sinks["slack"].url,
        "HEADWIND_TEAMS_WEBHOOK_URL": sinks["teams"].url,
        "HEADWIND_WEBHOOK_URL": sinks["webhook"].url,
        "HEADWIND_WEBHOOK_SECRET": "hook-secret",
        "HEADWIND_SLACK_EVENTS": "request_created,update_failed",
        "HEADWIND_DASHBOARD_URL": "https://headwind.example",
    })
    return sinks


@pytest.fixture
def staff():
    user = User.objects.create_user("sam", password="x", is_staff=True)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def csrf_of(page) -> str:
    return re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content).group(1).decode()


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_page_is_named_and_linked_from_the_admin_index(configured, staff):
    assert reverse("admin:notifications") == PAGE
    index = staff.get("/admin/")
    assert index.status_code == 200
    assert f'href="{PAGE}"'.encode() in index.content


def test_the_page_lists_channels_but_never_their_urls(configured, staff):
    page = staff.get(PAGE)
    assert page.status_code == 200
    text = page.content.decode()
    for title in ("Slack", "Microsoft Teams", "JSON webhook"):
        assert title in text
    assert "SLACK_WEBHOOK_URL" in text and "HEADWIND_TEAMS_WEBHOOK_URL" in text
    assert "request_created, update_failed" in text
    assert "signed (X-Headwind-Signature)" in text
    assert text.count('value="Send test notification"') == 3
    assert "127.0.0.1" not in text and TOKEN not in text and "hook-secret" not in text


def test_only_staff_get_in():
    assert Client().get(PAGE).status_code == 302  # to the admin login
    user = User.objects.create_user("pat", password="x")
    client = Client()
    client.force_login(user)
    response = client.get(PAGE)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_the_button_needs_the_csrf_token(configured, staff):
    assert staff.post(PAGE, {"channel": "slack"}).status_code == 403
    assert configured["slack"].received == []


@pytest.mark.parametrize("channel", ["slack", "teams", "webhook"])
def test_the_button_sends_a_test_notification(configured, staff, channel):
    before = sample("headwind_notifications_sent_total", channel=channel, event="test")
    token = csrf_of(staff.get(PAGE))
    response = staff.post(PAGE, {"channel": channel, "csrfmiddlewaretoken": token}, follow=True)
    assert response.redirect_chain == [(PAGE, 302)]
    (request,) = configured[channel].received
    body = request.json()
    if channel == "slack":
        assert body["blocks"][0]["text"]["text"] == \
            "📦 Approval requested: Deployment default/test-deployment (nginx)"
        assert body["blocks"][-1]["elements"][0]["url"] == "https://headwind.example/"
    elif channel == "teams":
        assert body["attachments"][0]["content"]["version"] == "1.5"
    else:
        assert body["event"] == "request_created" and body["link"] == "https://headwind.example/"
        assert verify(request.body, request.header("X-Headwind-Signature"), "hook-secret")
    messages = [str(m) for m in response.context["messages"]]
    assert messages and "test notification delivered (answered 200)" in messages[0]
    assert sample("headwind_notifications_sent_total", channel=channel, event="test") == before + 1


def test_a_failing_channel_shows_the_scrubbed_error(configured, staff):
    slack = configured["slack"]
    slack.script(Answer(404, body=f"no_service for {slack.url} {TOKEN}".encode()))
    token = csrf_of(staff.get(PAGE))
    response = staff.post(PAGE, {"channel": "slack", "csrfmiddlewaretoken": token}, follow=True)
    (message,) = [str(m) for m in response.context["messages"]]
    assert message.startswith("Slack: test notification failed: answered 404: no_service for ")
    assert TOKEN not in response.content.decode() and "127.0.0.1" not in message


def test_an_unknown_or_unconfigured_channel(settings, staff):
    settings.HEADWIND_NOTIFY = from_environ({})
    page = staff.get(PAGE)
    assert b"No channel is configured" in page.content
    response = staff.post(PAGE, {"channel": "slack", "csrfmiddlewaretoken": csrf_of(
        staff.get("/admin/password_change/"))}, follow=True)
    assert [str(m) for m in response.context["messages"]] == ["Slack is not configured."]
