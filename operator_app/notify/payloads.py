"""What each channel is sent: Slack Block Kit, a Teams Adaptive Card in the Workflows envelope,
and Headwind's own JSON for generic webhooks. Also the storm summaries.

Pure module (stdlib only). Every text is cut to the vendor's documented limits here, so a long
image reference or reason never gets a message refused:

- Slack (Block Kit reference): at most 50 blocks; header text 150 characters; section text
  3000; at most 10 section fields of 2000 each; at most 10 context elements; at most 25
  elements in an actions block; button text 75, button url 3000 (a longer link is left out
  rather than cut, since a cut URL is a broken one). The top-level ``text`` (the notification
  fallback) is kept to 3000.
- Teams: Adaptive Card 1.5 (validated against the official JSON schema in the tests); a
  Workflows/Teams message may be at most about 28 KB, so texts are cut well below that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from .notice import WORDING, Event, Notice

ELLIPSIS = "…"

SLACK_MAX_BLOCKS = 50
SLACK_HEADER = 150
SLACK_SECTION_TEXT = 3000
SLACK_MAX_FIELDS = 10
SLACK_FIELD = 2000
SLACK_MAX_CONTEXT = 10
SLACK_MAX_ACTIONS = 25
SLACK_BUTTON_TEXT = 75
SLACK_URL = 3000
SLACK_FALLBACK = 3000

TEAMS_TITLE = 300
TEAMS_TEXT = 2000
TEAMS_LIST = 6000  # a summary's list (20 lines of at most 300)
TEAMS_FACT_TITLE = 100
TEAMS_FACT_VALUE = 600
TEAMS_MAX_FACTS = 12
TEAMS_URL = 2000

SUMMARY_ITEM_FIELD = 200  # each text of an item kept for a summary
ADAPTIVE_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
ADAPTIVE_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
_TEAMS_COLOURS = {"info": "accent", "good": "good", "warning": "warning",
                  "attention": "attention"}


def fit(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, marked with an ellipsis when cut."""
    text = text or ""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + ELLIPSIS


def slack_escape(text: str) -> str:
    """Slack's three control characters (mrkdwn): keeps ``<!channel>`` and links inert."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fit_escaped(text: str, limit: int) -> str:
    """Escape for mrkdwn and cut to ``limit`` characters *after* escaping, never inside an
    entity."""
    escaped = slack_escape(text or "")
    if len(escaped) <= limit:
        return escaped
    out, used = [], 0
    for ch in text:
        piece = slack_escape(ch)
        if used + len(piece) > limit - 1:
            break
        out.append(piece)
        used += len(piece)
    return "".join(out) + ELLIPSIS


def _facts(notice: Notice) -> list[tuple[str, str, bool]]:
    """(label, value, is_reference) pairs worth showing, in order."""
    slot_label = "Chart" if notice.slot == "chart" else "Container"
    rows = [
        ("Target", notice.target, False),
        (slot_label, notice.slot, False),
        ("From", notice.from_ref, True),
        ("To", notice.to_ref, True),
        ("Policy", notice.policy, False),
        ("By", notice.actor, False),
        ("Approvals", notice.progress, False),
        ("Request", notice.request or "", False),
    ]
    return [row for row in rows if row[1]]


# --- Slack ------------------------------------------------------------------------------------


def slack_header(text: str) -> dict:
    return {"type": "header", "text": {"type": "plain_text", "text": fit(text, SLACK_HEADER),
                                       "emoji": True}}


def slack_fields(pairs: list[tuple[str, str, bool]]) -> dict:
    """A section of mrkdwn fields: at most 10, each at most 2000 characters."""
    fields = []
    for label, value, reference in pairs[:SLACK_MAX_FIELDS]:
        head = f"*{slack_escape(label)}*\n"
        room = SLACK_FIELD - len(head) - (2 if reference else 0)
        body = fit_escaped(value, room)
        fields.append({"type": "mrkdwn",
                       "text": head + (f"`{body}`" if reference else body)})
    return {"type": "section", "fields": fields}


def slack_text(text: str) -> dict:
    """A section whose (already escaped) mrkdwn text is at most 3000 characters."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": fit(text, SLACK_SECTION_TEXT)}}


def slack_context(texts: list[str]) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": fit(t, SLACK_SECTION_TEXT)}
                                            for t in texts[:SLACK_MAX_CONTEXT]]}


def slack_button(text: str, url: str) -> dict | None:
    """A link button, or None when the URL is empty or over Slack's 3000 characters."""
    if not url or len(url) > SLACK_URL:
        return None
    return {"type": "button", "text": {"type": "plain_text", "text": fit(text, SLACK_BUTTON_TEXT)},
            "url": url, "action_id": "headwind-view"}


def slack_actions(buttons: list[dict | None]) -> dict | None:
    elements = [b for b in buttons if b][:SLACK_MAX_ACTIONS]
    return {"type": "actions", "elements": elements} if elements else None


def slack_envelope(fallback: str, blocks: list[dict | None]) -> dict:
    """The incoming-webhook body: fallback text and at most 50 blocks."""
    kept = [b for b in blocks if b]
    if len(kept) > SLACK_MAX_BLOCKS:
        kept = kept[: SLACK_MAX_BLOCKS - 1] + [slack_context(["(message shortened)"])]
    return {"text": fit(fallback, SLACK_FALLBACK), "blocks": kept}


def _slack_date(at: datetime, fallback: str) -> str:
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def slack_message(notice: Notice, link: str) -> dict:
    blocks = [
        slack_header(f"{notice.emoji} {notice.title}"),
        slack_fields(_facts(notice)),
        slack_text(f"*Reason*\n{fit_escaped(notice.reason, SLACK_SECTION_TEXT - 12)}")
        if notice.reason else None,
        slack_context([f"Headwind · `{notice.event}` · {_slack_date(notice.at, notice.at_text)}"]),
        slack_actions([slack_button("View in Headwind", link)]),
    ]
    return slack_envelope(f"{notice.emoji} {notice.title}", blocks)


# --- Teams (Workflows webhook, Adaptive Card 1.5) ----------------------------------------------


def teams_envelope(card: dict) -> dict:
    """What a Teams Workflows webhook ("When a Teams webhook request is received") expects."""
    return {"type": "message", "attachments": [
        {"contentType": ADAPTIVE_CONTENT_TYPE, "contentUrl": None, "content": card}]}


def adaptive_card(title: str, severity: str, body: list[dict | None], link: str,
                  fallback: str) -> dict:
    card = {
        "$schema": ADAPTIVE_SCHEMA,
        "type": "AdaptiveCard",
        "version": "1.5",
        "fallbackText": fit(fallback, TEAMS_TITLE),
        "body": [{"type": "TextBlock", "text": fit(title, TEAMS_TITLE), "style": "heading",
                  "weight": "bolder", "size": "medium", "wrap": True,
                  "color": _TEAMS_COLOURS.get(severity, "default")}]
        + [element for element in body if element],
    }
    if link and len(link) <= TEAMS_URL:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "View in Headwind", "url": link}]
    return card


def teams_facts(pairs: list[tuple[str, str, bool]]) -> dict:
    return {"type": "FactSet", "facts": [
        {"title": fit(label, TEAMS_FACT_TITLE), "value": fit(value, TEAMS_FACT_VALUE)}
        for label, value, _ in pairs[:TEAMS_MAX_FACTS]]}


def teams_text(text: str, *, subtle: bool = False, limit: int = TEAMS_TEXT) -> dict:
    element = {"type": "TextBlock", "text": fit(text, limit), "wrap": True}
    if subtle:
        element.update(isSubtle=True, size="small")
    return element


def teams_message(notice: Notice, link: str) -> dict:
    card = adaptive_card(
        f"{notice.emoji} {notice.title}", notice.severity,
        [teams_text(notice.reason) if notice.reason else None,
         teams_facts(_facts(notice)),
         teams_text(f"Headwind · {notice.event} · {notice.at_text}", subtle=True)],
        link, notice.title)
    return teams_envelope(card)


# --- generic webhook (Headwind's JSON) ---------------------------------------------------------


def webhook_body(notice: Notice, link: str, delivery_id: str) -> dict:
    """The notice as JSON. Every key is always present (null when it does not apply)."""
    return {
        "id": delivery_id,
        "event": str(notice.event),
        "at": notice.at_text,
        "title": notice.title,
        "target": {"kind": notice.kind, "namespace": notice.namespace, "name": notice.name,
                   "slot": notice.slot},
        "from": notice.from_ref or None,
        "to": notice.to_ref or None,
        "policy": notice.policy or None,
        "actor": notice.actor or None,
        "reason": notice.reason or None,
        "request": notice.request,
        "approvals": notice.approvals,
        "required": notice.required,
        "link": link or None,
    }


# --- storm summaries -------------------------------------------------------------------------


def summary_item(notice: Notice) -> dict:
    """The short form of a held notice, kept (bounded) for its window's summary."""
    return {"event": str(notice.event), "kind": fit(notice.kind, SUMMARY_ITEM_FIELD),
            "namespace": notice.namespace, "name": fit(notice.name, SUMMARY_ITEM_FIELD),
            "slot": fit(notice.slot, SUMMARY_ITEM_FIELD),
            "from": fit(notice.from_ref, SUMMARY_ITEM_FIELD),
            "to": fit(notice.to_ref, SUMMARY_ITEM_FIELD)}


def item_line(item: dict) -> str:
    try:
        phrase = WORDING[Event(item.get("event", ""))][0]
    except ValueError:
        phrase = str(item.get("event", ""))
    change = " → ".join(part for part in (item.get("from"), item.get("to")) if part)
    return (f"{phrase}: {item.get('kind', '')} {item.get('namespace', '')}/"
            f"{item.get('name', '')} ({item.get('slot', '')}) {change}").strip()


@dataclass(frozen=True)
class Summary:
    """What a storm window held back for one destination."""

    count: int  # notices held (not sent on their own)
    start: datetime
    end: datetime
    items: list[dict] = field(default_factory=list)  # at most the first few, in order

    @property
    def omitted(self) -> int:
        return max(0, self.count - len(self.items))

    @property
    def title(self) -> str:
        noun = "notification" if self.count == 1 else "notifications"
        return f"{self.count} more {noun} between {self.start:%H:%M:%S} and {self.end:%H:%M:%S} UTC"


def slack_summary(summary: Summary, link: str) -> dict:
    lines, budget = [], SLACK_SECTION_TEXT - 40
    for item in summary.items:
        line = "• " + fit_escaped(item_line(item), 300)
        if len(line) + 1 > budget:
            break
        lines.append(line)
        budget -= len(line) + 1
    rest = summary.count - len(lines)
    blocks = [
        slack_header(f"🌪️ {summary.title}"),
        slack_text("\n".join(lines)) if lines else None,
        slack_context([f"…and {rest} more; the dashboard lists them all." if rest else
                       "Sent as one summary because many notifications came at once."]),
        slack_actions([slack_button("Open Headwind", link)]),
    ]
    return slack_envelope(f"🌪️ {summary.title}", blocks)


def teams_summary(summary: Summary, link: str) -> dict:
    lines, budget = [], TEAMS_LIST
    for item in summary.items:
        line = f"- {fit(item_line(item), 300)}"
        if len(line) + 1 > budget:
            break
        lines.append(line)
        budget -= len(line) + 1
    rest = summary.count - len(lines)
    card = adaptive_card(
        f"🌪️ {summary.title}", "warning",
        [teams_text("\n".join(lines), limit=TEAMS_LIST) if lines else None,
         teams_text(f"…and {rest} more; the dashboard lists them all." if rest else
                    "Sent as one summary because many notifications came at once.",
                    subtle=True)],
        link, summary.title)
    return teams_envelope(card)


def webhook_summary(summary: Summary, link: str, delivery_id: str) -> dict:
    return {
        "id": delivery_id,
        "event": "summary",
        "at": summary.end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "title": summary.title,
        "window": {"start": summary.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                   "end": summary.end.strftime("%Y-%m-%dT%H:%M:%SZ")},
        "count": summary.count,
        "items": summary.items,
        "omitted": summary.omitted,
        "link": link or None,
    }


def sample_notice() -> Notice:
    """The canned notice of the admin's "send test notification" button."""
    return Notice(event=Event.REQUEST_CREATED, kind="Deployment", namespace="default",
                  name="test-deployment", slot="nginx", from_ref="nginx:1.25.0",
                  to_ref="nginx:1.26.0", policy="minor", actor="headwind",
                  reason="This is a test notification sent from the Headwind admin.")
