"""The end-to-end tests' own fixtures: headless Chromium driven by Playwright against a live Django
server (pytest-django ``live_server``) and a real gateway process. See docs/testing.md.
The stack's processes (gateway, worker, SMTP sink) come from the root conftest.py.

Playwright's own browser download does not work on the project's machines: the tests use Debian's
Chromium (`apt-get install chromium`, done by `.ci/run`). Outside CI a missing browser or a missing
``playwright`` package skips these tests with the reason; with CI=true it fails them."""

import os
import shutil
from pathlib import Path

import pytest

from conftest import IN_CI, ROOT

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# What the machine notes prescribe: no sandbox as root, and no background traffic to Google,
# which the closed network refuses (and which would slow every start).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"


def require_browser() -> None:
    missing = []
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        missing.append(f"Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -r requirements-dev.txt)")
    if not missing:
        return
    message = "browser tests need " + " and ".join(missing)
    if IN_CI:
        pytest.fail(f"{message} (CI=true: every browser test must run)")
    pytest.skip(message)


@pytest.fixture
def browser_page(live_server, monkeypatch):
    """A fresh headless Chromium page, and the list of console errors and page errors it saw."""
    require_browser()
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are
    # ordinary blocking calls all the same.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(
            base_url=live_server.url, viewport={"width": 1360, "height": 900}, accept_downloads=True
        )
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
        page = context.new_page()
        page.on(
            "console",
            lambda m: (
                errors.append(f"console {m.type}: {m.text} @ {page.url}")
                if m.type == "error"
                else None
            ),
        )
        page.on("pageerror", lambda e: errors.append(f"page error: {e} @ {page.url}"))
        page.on("dialog", lambda dialog: dialog.accept())
        page.set_default_timeout(15_000)
        try:
            yield page, errors
        finally:
            context.close()
            browser.close()


def screenshot(page, name: str, *, full_page: bool = True, locator=None) -> Path:
    path = SCREENSHOTS / f"{name}.png"
    (locator or page).screenshot(path=str(path), **({} if locator else {"full_page": full_page}))
    return path
