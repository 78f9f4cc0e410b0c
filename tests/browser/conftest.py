"""Browser tests: Debian's Chromium, driven by Playwright, against Headwind's web process
(``python -m headwind_site.web``, uvicorn).

What is real: Chromium (``/usr/bin/chromium``, never a downloaded browser), the shipped web
process serving ``headwind_site.asgi`` (HTTP and WebSockets) on the test database, the testbed's
kube-apiserver and Redis (Channels layer and Celery broker), a real Celery worker, and the
UpdateRequest mirror watching the cluster. Nothing is mocked.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.testbed.fixtures import serve_web, stop_processes

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("HEADWIND_CHROMIUM", "/usr/bin/chromium")
# As this machine's Chromium must be started (Playwright adds --headless and a fresh profile).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@pytest.fixture(scope="session")
def asgi_server(testbed, django_db_setup, tmp_path_factory) -> Iterator[str]:
    """The web process on a free port, on the test database and the testbed; yields its base
    URL."""
    from django.conf import settings

    server, base = serve_web(testbed, tmp_path_factory.mktemp("web") / "web.log",
                             HEADWIND_TEST_DB=settings.DATABASES["default"]["NAME"])
    yield base
    stop_processes(server)


@pytest.fixture(scope="module")
def chromium():
    """One Chromium per module: Playwright's sync API holds an event loop in the test thread
    while it runs, which later tests' ``async_to_sync`` would trip over."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium "
                    "(scripts/install-deps.sh installs it)",
                    pytrace=False)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in the test thread; the ORM calls the tests and
    # their fixtures make meanwhile (creating users, reading rows) are ordinary blocking calls
    # and are safe there. Allowed for as long as that loop exists, and not a moment longer.
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def open_page(chromium, asgi_server):
    """``open_page(width=1280, height=900)`` → a fresh browser context's page (own cookies).

    Every page's JavaScript errors, and every Content-Security-Policy violation the browser
    reports, fail the test: the policy is strict, and the pages must not need more.
    """
    contexts, errors = [], []

    def open_(width: int = 1280, height: int = 900):
        context = chromium.new_context(viewport={"width": width, "height": height},
                                       base_url=asgi_server)
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda message: errors.append(message.text)
                if "Content Security Policy" in message.text else None)
        return page

    yield open_
    for context in contexts:
        context.close()
    assert not errors, f"JavaScript errors or CSP violations: {errors}"


@pytest.fixture
def mirror(mirror, transactional_db):
    """The shared mirror fixture, with committed rows the browser's server process can see."""
    return mirror
