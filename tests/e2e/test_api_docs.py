"""The API documentation and the API tokens page in a real browser, under the CSP."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.conftest import log_in


def test_the_api_docs_render_from_warden_itself_under_the_csp(page, developer, screenshot):
    log_in(page, developer["username"], developer["password"])

    page.goto("/api/docs/")

    # Swagger UI's own files come from /static/ (drf-spectacular-sidecar); the page fixture
    # fails the test on any CSP violation or JavaScript error.
    expect(page.get_by_text("Warden API").first).to_be_visible(timeout=20000)
    expect(page.get_by_text("/api/v1/requests/", exact=True).first).to_be_visible()
    screenshot("api-docs")


def test_a_person_makes_a_token_and_sees_it_once(page, developer, screenshot):
    log_in(page, developer["username"], developer["password"])
    page.get_by_role("link", name="API tokens").click()

    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Make token").click()

    secret = page.locator("code.secret")
    expect(secret).to_have_text(re.compile(r"^wdn_[0-9a-f]+_\S{20,}$"))
    screenshot("api-token-made")
    page.goto("/tokens/")
    expect(page.locator("code.secret")).to_have_count(0)
    expect(page.get_by_role("row", name=re.compile("laptop"))).to_be_visible()
