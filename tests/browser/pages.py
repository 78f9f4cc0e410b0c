"""What a person does on every page: sign in, wait for the live connection."""

from __future__ import annotations

from urllib.parse import quote

from playwright.sync_api import expect

PASSWORD = "browser-pw-1"


def sign_in(page, username: str, password: str = PASSWORD, then: str = "/") -> None:
    page.goto(f"/accounts/login/?next={quote(then)}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{then}")
    live_connected(page)


def live_connected(page) -> None:
    """The page's WebSocket is open (so nothing broadcast from now on is missed)."""
    # Not wait_for_function: evaluating a string is eval, which the page's strict
    # Content-Security-Policy refuses (and reports) as it should.
    expect(page.locator("html")).to_have_attribute("data-live", "connected")
