"""What each channel is sent, checked against the vendors' documented shapes and limits:

- Slack Block Kit: every documented limit Headwind's messages touch, each pushed past its
  bound by hostile input (long names, references, reasons full of ``<&>``);
- Teams: the Workflows envelope, and the card validated with ``jsonschema`` against the
  official Adaptive Card 1.5 schema (tests/fixtures/notify/, source and licence noted there);
- the generic webhook's JSON.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from jsonschema import Draft6Validator

from operator_app.notify import payloads as p
from operator_app.notify.notice import Event, Notice

SCHEMA = json.loads((Path(__file__).parents[1] / "fixtures" / "notify" /
                     "adaptive-card-1.5.json").read_text())
CARD = Draft6Validator(SCHEMA)
LINK = "https://headwind.example/updates/team-a/web-app-1-3-0-abcde"
HOSTILE = "<!channel> & <https://evil.example|click> " * 400  # 16,400 characters


def plain(**extra) -> Notice:
    fields = dict(event=Event.REQUEST_APPROVED, kind="Deployment", namespace="team-a",
                  name="web", slot="app", from_ref="reg.example/team/app:1.2.0",
                  to_ref="reg.example/team/app:1.3.0", policy="minor", actor="alice",
                  reason="1.2.0 → 1.3.0 (minor)", request="web-app-1-3-0-abcde",
                  approvals=1, required=2, at=datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC))
    fields.update(extra)
    return Notice(**fields)


def hostile() -> Notice:
    long = "x" * 5000
    return plain(kind="K" * 300, namespace="n" * 63, name=long, slot=long,
                 from_ref="reg.example/" + long, to_ref="reg.example/" + long + "<&>",
                 policy=HOSTILE, actor=HOSTILE, reason=HOSTILE, request="r" * 253)


# --- Slack ------------------------------------------------------------------------------------


def slack_violations(message: dict) -> list[str]:
    """Every Block Kit limit that applies to what Headwind sends (docs.slack.dev reference:
    header, section, context and actions blocks, button element, message blocks)."""
    bad = []
    blocks = message["blocks"]
    if len(blocks) > 50:
        bad.append(f"{len(blocks)} blocks")
    if len(message["text"]) > 3000:
        bad.append("fallback text over 3000")
    for block in blocks:
        if block["type"] == "header":
            if block["text"]["type"] != "plain_text" or len(block["text"]["text"]) > 150:
                bad.append("header")
        elif block["type"] == "section":
            if "text" in block and len(block["text"]["text"]) > 3000:
                bad.append("section text over 3000")
            fields = block.get("fields", [])
            if len(fields) > 10:
                bad.append(f"{len(fields)} fields")
            bad += [f"field of {len(f['text'])}" for f in fields if len(f["text"]) > 2000]
            if "text" not in block and not fields:
                bad.append("empty section")
        elif block["type"] == "context":
            if not 1 <= len(block["elements"]) <= 10:
                bad.append("context elements")
            bad += ["context text" for e in block["elements"] if len(e["text"]) > 3000]
        elif block["type"] == "actions":
            if not 1 <= len(block["elements"]) <= 25:
                bad.append("actions elements")
            for button in block["elements"]:
                if len(button["text"]["text"]) > 75:
                    bad.append("button text over 75")
                if not button.get("url") or len(button["url"]) > 3000:
                    bad.append("button url")
                if len(button.get("action_id", "")) > 255:
                    bad.append("action_id")
        else:
            bad.append(f"unexpected block {block['type']}")
        if len(block.get("block_id", "")) > 255:
            bad.append("block_id")
    return bad


def test_slack_message_shape():
    message = p.slack_message(plain(), LINK)
    assert [b["type"] for b in message["blocks"]] == ["header", "section", "section", "context",
                                                      "actions"]
    assert message["blocks"][0]["text"]["text"] == \
        "👍 Update approved: Deployment team-a/web (app)"
    fields = [f["text"] for f in message["blocks"][1]["fields"]]
    assert fields == ["*Target*\nDeployment team-a/web", "*Container*\napp",
                      "*From*\n`reg.example/team/app:1.2.0`", "*To*\n`reg.example/team/app:1.3.0`",
                      "*Policy*\nminor", "*By*\nalice", "*Approvals*\n1 of 2",
                      "*Request*\nweb-app-1-3-0-abcde"]
    assert "<!date^1772600767^" in message["blocks"][3]["elements"][0]["text"]
    button = message["blocks"][4]["elements"][0]
    assert button == {"type": "button", "text": {"type": "plain_text", "text": "View in Headwind"},
                      "url": LINK, "action_id": "headwind-view"}
    assert slack_violations(message) == []


def test_slack_message_of_hostile_input_keeps_every_limit_and_stays_inert():
    message = p.slack_message(hostile(), LINK)
    assert slack_violations(message) == []
    text = json.dumps(message)
    assert "<!channel>" not in text and "<https://evil" not in text
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;" in text
    assert message["blocks"][0]["text"]["text"].endswith("…")
    for field in message["blocks"][1]["fields"]:  # cut after escaping, never inside an entity
        assert not field["text"].rstrip("`…").endswith(("&", "&l", "&lt", "&a", "&am", "&amp"))


def test_slack_chart_slot_and_missing_parts():
    message = p.slack_message(plain(event=Event.UPDATE_DETECTED, slot="chart", from_ref="",
                                    policy="", actor="", reason="", request=None,
                                    approvals=None, required=None), "")
    assert [b["type"] for b in message["blocks"]] == ["header", "section", "context"]
    assert [f["text"] for f in message["blocks"][1]["fields"]] == [
        "*Target*\nDeployment team-a/web", "*Chart*\nchart", "*To*\n`reg.example/team/app:1.3.0`"]


@pytest.mark.parametrize("limit", ["header", "fields", "field", "button_text", "url", "blocks",
                                   "section_text", "context", "actions", "fallback"])
def test_each_slack_limit_is_enforced_by_its_builder(limit):
    if limit == "header":
        assert len(p.slack_header("h" * 500)["text"]["text"]) == 150
    elif limit == "fields":
        pairs = [(f"label {i}", "value", False) for i in range(30)]
        assert len(p.slack_fields(pairs)["fields"]) == 10
    elif limit == "field":
        (field,) = p.slack_fields([("Label", "v" * 5000, True)])["fields"]
        assert len(field["text"]) == 2000 and field["text"].endswith("…`")
    elif limit == "button_text":
        assert len(p.slack_button("b" * 200, LINK)["text"]["text"]) == 75
    elif limit == "url":
        assert p.slack_button("View", "https://h.example/" + "u" * 2982) is not None  # 3000
        assert p.slack_button("View", "https://h.example/" + "u" * 2983) is None  # 3001
        assert p.slack_message(plain(), "https://h.example/" + "u" * 2983)["blocks"][-1][
            "type"] == "context"
    elif limit == "blocks":
        message = p.slack_envelope("t", [p.slack_text(str(i)) for i in range(80)])
        assert len(message["blocks"]) == 50
        assert message["blocks"][-1]["elements"][0]["text"] == "(message shortened)"
    elif limit == "section_text":
        assert len(p.slack_text("s" * 4000)["text"]["text"]) == 3000
    elif limit == "context":
        assert len(p.slack_context([str(i) for i in range(15)])["elements"]) == 10
    elif limit == "actions":
        buttons = [p.slack_button(str(i), LINK) for i in range(40)]
        assert len(p.slack_actions(buttons)["elements"]) == 25
    elif limit == "fallback":
        assert len(p.slack_envelope("f" * 5000, [])["text"]) == 3000


def summary(count: int = 195, items: int = 20, long: bool = False) -> p.Summary:
    name = "w" * 300 if long else "web"
    return p.Summary(count=count, start=datetime(2026, 3, 4, 5, 6, tzinfo=UTC),
                     end=datetime(2026, 3, 4, 5, 7, tzinfo=UTC),
                     items=[p.summary_item(plain(name=f"{name}-{i}", event=Event.UPDATE_DETECTED))
                            for i in range(items)])


def test_slack_summary_keeps_the_limits():
    message = p.slack_summary(summary(), "https://headwind.example/")
    assert slack_violations(message) == []
    assert message["blocks"][0]["text"]["text"] == \
        "🌪️ 195 more notifications between 05:06:00 and 05:07:00 UTC"
    lines = message["blocks"][1]["text"]["text"].splitlines()
    assert len(lines) == 20 and lines[0] == ("• New version detected: Deployment team-a/web-0 "
                                             "(app) reg.example/team/app:1.2.0 → "
                                             "reg.example/team/app:1.3.0")
    assert message["blocks"][2]["elements"][0]["text"].startswith("…and 175 more")
    assert slack_violations(p.slack_summary(summary(long=True), "")) == []


# --- Teams ------------------------------------------------------------------------------------


def card_errors(card: dict) -> list[str]:
    """Every schema error, including those inside anyOf branches."""
    found, todo = [], list(CARD.iter_errors(card))
    while todo:
        error = todo.pop()
        found.append(f"{'/'.join(map(str, error.absolute_path))}: {error.message}")
        todo.extend(error.context or [])
    return found


def check_teams(message: dict) -> dict:
    """The Workflows envelope around one Adaptive Card 1.5 that the official schema accepts."""
    assert set(message) == {"type", "attachments"} and message["type"] == "message"
    (attachment,) = message["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert "contentUrl" in attachment and attachment["contentUrl"] is None
    card = attachment["content"]
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.5")
    assert card_errors(card) == []
    # The schema's enum patterns are not anchored at both ends: check the exact names too.
    for element in card["body"]:
        assert element.get("weight", "bolder") in {"default", "lighter", "bolder"}
        assert element.get("size", "default") in {"default", "small", "medium", "large",
                                                  "extraLarge"}
        assert element.get("color", "default") in {"default", "dark", "light", "accent", "good",
                                                   "warning", "attention"}
        assert element.get("style", "default") in {"default", "heading"}
    assert len(json.dumps(message).encode()) < 28 * 1024  # Teams' message size limit
    return card


def test_teams_card_is_a_valid_adaptive_card_1_5():
    card = check_teams(p.teams_message(plain(), LINK))
    title, reason, facts, footer = card["body"]
    assert title["type"] == "TextBlock" and title["text"] == \
        "👍 Update approved: Deployment team-a/web (app)"
    assert title["color"] == "good" and title["style"] == "heading"
    assert reason["text"] == "1.2.0 → 1.3.0 (minor)"
    assert facts["type"] == "FactSet"
    assert {f["title"]: f["value"] for f in facts["facts"]}["Approvals"] == "1 of 2"
    assert footer["text"] == "Headwind · request_approved · 2026-03-04T05:06:07Z"
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "View in Headwind",
                                "url": LINK}]


def test_teams_card_of_hostile_input_and_summaries_stay_valid():
    check_teams(p.teams_message(hostile(), LINK))
    card = check_teams(p.teams_message(plain(reason=""), ""))
    assert "actions" not in card  # no dashboard URL, no button (an OpenUrl needs a url)
    card = check_teams(p.teams_summary(summary(), "https://headwind.example/"))
    assert card["body"][0]["text"].startswith("🌪️ 195 more notifications")
    assert card["body"][1]["text"].count("\n- ") == 19
    assert card["body"][2]["text"].startswith("…and 175 more")
    card = check_teams(p.teams_summary(summary(long=True), "https://headwind.example/"))
    shown = card["body"][1]["text"].count("\n- ") + 1
    assert len(card["body"][1]["text"]) <= 6000
    assert card["body"][2]["text"].startswith(f"…and {195 - shown} more")


def test_the_schema_really_checks_cards():
    card = p.teams_message(plain(), LINK)["attachments"][0]["content"]
    broken = json.loads(json.dumps(card))
    del broken["body"][2]["facts"][0]["value"]
    assert any("'value' is a required property" in e for e in card_errors(broken))
    broken = json.loads(json.dumps(card))
    broken["actions"][0]["link"] = broken["actions"][0].pop("url")
    assert card_errors(broken)
    assert card_errors({**card, "msteams": {"width": "Full"}})  # additionalProperties: false


# --- generic webhook --------------------------------------------------------------------------


def test_webhook_body_is_the_notice_as_json():
    body = p.webhook_body(plain(), LINK, "abc123")
    assert body == {
        "id": "abc123", "event": "request_approved", "at": "2026-03-04T05:06:07Z",
        "title": "Update approved: Deployment team-a/web (app)",
        "target": {"kind": "Deployment", "namespace": "team-a", "name": "web", "slot": "app"},
        "from": "reg.example/team/app:1.2.0", "to": "reg.example/team/app:1.3.0",
        "policy": "minor", "actor": "alice", "reason": "1.2.0 → 1.3.0 (minor)",
        "request": "web-app-1-3-0-abcde", "approvals": 1, "required": 2, "link": LINK}
    bare = p.webhook_body(plain(policy="", actor="", reason="", request=None, approvals=None,
                                required=None), "", "x")
    assert set(bare) == set(body) and bare["link"] is None and bare["request"] is None


def test_webhook_summary():
    body = p.webhook_summary(summary(count=3, items=3), "", "w1")
    assert body["event"] == "summary" and body["count"] == 3 and body["omitted"] == 0
    assert body["window"] == {"start": "2026-03-04T05:06:00Z", "end": "2026-03-04T05:07:00Z"}
    assert body["items"][0] == {"event": "update_detected", "kind": "Deployment",
                                "namespace": "team-a", "name": "web-0", "slot": "app",
                                "from": "reg.example/team/app:1.2.0",
                                "to": "reg.example/team/app:1.3.0"}


# --- the notice itself ------------------------------------------------------------------------


def test_notice_links_keys_and_messages():
    notice = plain(annotations={"headwind.sh/notify": "slack", "other/x": "y"})
    assert dict(notice.annotations) == {"headwind.sh/notify": "slack"}
    assert notice.link("https://hw.example/") == LINK.replace("headwind.example", "hw.example")
    assert plain(request=None).link("https://hw.example") == "https://hw.example/"
    assert notice.link("") == ""
    assert not notice.link("https://hw.example").endswith(("/approve", "/reject"))
    again = Notice.from_message(json.loads(json.dumps(notice.to_message())))
    assert again == notice and again.at == notice.at and again.key == notice.key
    assert plain(at=datetime(2030, 1, 1, tzinfo=UTC)).key == notice.key  # what, not when
    assert plain(approvals=2).key != notice.key
    with pytest.raises(ValueError):
        plain(event="update_exploded")
