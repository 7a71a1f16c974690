"""Logging in and out in a real browser, with a directory password checked by a real slapd."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import contrast_failures, log_in
from tests.fixtures.browser import PHONE


def test_a_developer_logs_in_and_sees_their_teams_on_my_access(page, developer, screenshot):
    log_in(page, developer["username"], developer["password"])

    expect(page).to_have_title(re.compile("My access"))
    expect(page.get_by_role("heading", name="Alice Liddell")).to_be_visible()
    teams = page.get_by_role("table")
    expect(teams.get_by_role("row", name=re.compile(r"^payments\s+direct"))).to_be_visible()
    expect(
        teams.get_by_role("row", name=re.compile(r"engineering.*through a nested group"))
    ).to_be_visible()
    expect(
        page.get_by_role("navigation", name="Main").get_by_role("link", name="My access")
    ).to_have_attribute("aria-current", "page")
    assert contrast_failures(page) == []
    screenshot("my-access")


def test_a_wrong_password_shows_the_error_and_keeps_the_name(page, developer):
    log_in(page, developer["username"], "looking-glass")

    expect(page.get_by_role("alert")).to_contain_text(
        "Please enter a correct username and password"
    )
    expect(page.get_by_label("Username")).to_have_value("alice")
    expect(page.get_by_label("Password")).to_have_value("")
    assert contrast_failures(page) == []
    expect(page).to_have_url(re.compile(r"/login/$"))


def test_logging_out_ends_the_session(page, developer):
    log_in(page, developer["username"], developer["password"])
    expect(page.get_by_role("heading", name="My access")).to_be_visible()

    page.get_by_role("button", name="Log out").click()

    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))


def test_logging_in_and_skipping_to_the_content_with_the_keyboard_only(page, developer):
    page.goto("/login/")
    # the username field has the focus as the page opens
    expect(page.get_by_label("Username")).to_be_focused()
    page.keyboard.type("alice")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type("wonderland")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="My access")).to_be_visible()

    # the first Tab on a page shows the skip link; Enter moves on to the content
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to main content")
    expect(skip).to_be_focused()
    box = skip.bounding_box()
    assert box is not None and box["y"] >= 0  # on screen, not just in the DOM
    assert skip.evaluate("el => getComputedStyle(el).outlineStyle") != "none"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"


@pytest.mark.parametrize("browser_context_options", [{"viewport": PHONE, "is_mobile": True}])
def test_on_a_phone_the_header_wraps_and_nothing_scrolls_sideways(page, developer, screenshot):
    log_in(page, developer["username"], developer["password"])
    expect(page.get_by_role("heading", name="My access")).to_be_visible()

    wider_than_screen = page.evaluate(
        "document.documentElement.scrollWidth > document.documentElement.clientWidth"
    )

    assert not wider_than_screen
    logout = page.get_by_role("button", name="Log out").bounding_box()
    assert logout is not None and logout["x"] + logout["width"] <= PHONE["width"]
    screenshot("phone")
