"""The inbound admin in a real browser: the server page's inbound address copied with its
button, the inbound list, a blocked message's page (its JSON and source shown as text, never
run) and its Bypass button. Any console error or page error fails the test."""

import pytest

from api.tests.test_inbound_api import make_inbound
from e2e.conftest import screenshot
from inbound.addresses import inbound_address
from inbound.models import InboundMessage

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_inbound_address_copy_list_and_bypass(browser_page, django_user_model, server):
    page, errors = browser_page
    django_user_model.objects.create_superuser("operator", "op@example.com", "browser-pass-1")
    reason = "The sender matches the inbound rule 'example.com'."
    subject = "<img src=x onerror=alert(1)>"
    blocked = make_inbound(
        server, status=InboundMessage.Status.BLOCKED, subject=subject, blocked_reason=reason
    )
    page.goto(f"/admin/login/?next=/admin/servers/server/{server.pk}/change/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "browser-pass-1")
    page.click("input[type=submit]")
    page.wait_for_selector("#inbound-address")
    address = inbound_address(server)
    assert page.inner_text("#inbound-address").strip() == address
    page.click("[data-copy-target=inbound-address]")
    page.wait_for_selector("#inbound .pm-copy-status:has-text('Copied')")
    assert page.evaluate("navigator.clipboard.readText()") == address
    screenshot(page, "inbound-server-panel", locator=page.locator("#inbound"))

    page.click("#nav-inbound")
    page.wait_for_selector("#result_list")
    assert "Blocked" in page.inner_text("#result_list")
    page.click("#result_list a:has-text('onerror')")
    page.wait_for_selector("#inbound-actions")
    assert "<script>alert(1)</script>" in page.inner_text("#inbound-json-text")
    assert "Subject: <img src=x onerror=alert(1)>" in page.inner_text("#raw-source-text")
    screenshot(page, "inbound-message")
    page.click("#bypass")  # confirmed (the fixture accepts dialogs)
    page.wait_for_selector(".messagelist .success")
    assert "Queued" in page.inner_text("#inbound-status")
    blocked.refresh_from_db()
    assert blocked.status == InboundMessage.Status.QUEUED
    assert errors == []
