"""What a person sees at 1366 px and at phone width: long unbroken text wraps and never pushes
Approve/Deny off screen, audit action names stay whole, the phone's header stays small, and
the pages follow the system's dark mode. Screenshots are saved as test artifacts."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from access.models import Person, Role
from access.services import requests
from tests.e2e.conftest import contrast_failures, log_in
from tests.e2e.test_round_trip import company_directory, staging  # noqa: F401

WIDE = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}
UNBROKEN = "x" * 5000


@pytest.fixture
def long_request(company_directory: Any, staging: Any) -> Any:  # noqa: F811
    """alice asks for developer in staging with one 5,000-character word as her reason."""
    return requests.submit_request(
        requester=Person.objects.get(username="alice"),
        role=Role.objects.get(name="developer"),
        environments=["staging"],
        namespaces=["payments"],
        justification=f"Rolling out {UNBROKEN}",
    )


def fits_the_screen(page: Any) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def within_reach(page: Any, locator: Any) -> bool:
    box = locator.bounding_box()
    width = page.viewport_size["width"]
    return box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width


@pytest.mark.parametrize("browser_context_options", [{"viewport": WIDE}, {"viewport": PHONE}])
def test_a_long_unbroken_reason_wraps_and_approve_stays_in_reach(
    page, long_request, screenshot, browser_context_options
):
    log_in(page, "judy", "pw-judy")

    page.goto("/inbox/")
    approve = page.get_by_role("button", name=f"Approve request #{long_request.pk}")
    expect(approve).to_be_visible()
    screenshot("inbox")
    assert fits_the_screen(page)
    assert within_reach(page, approve)
    assert within_reach(page, page.get_by_role("button", name=f"Deny request #{long_request.pk}"))

    page.goto(f"/requests/{long_request.pk}/")
    screenshot("request")
    assert fits_the_screen(page)


@pytest.mark.parametrize("browser_context_options", [{"viewport": WIDE}, {"viewport": PHONE}])
def test_the_audit_trail_keeps_action_names_whole_and_wraps_reasons(
    page, long_request, screenshot, browser_context_options
):
    log_in(page, "olivia", "pw-olivia")

    page.goto("/audit/")
    action = page.locator("code", has_text="request.submitted").first
    expect(action).to_be_visible()
    screenshot("audit")
    line = page.evaluate("parseFloat(getComputedStyle(document.body).lineHeight) || 24")
    assert action.bounding_box()["height"] < 1.5 * line  # one line: not broken mid-word
    assert fits_the_screen(page)


@pytest.mark.parametrize("browser_context_options", [{"viewport": PHONE}])
def test_on_a_phone_the_navigation_takes_little_of_the_screen(
    page,
    company_directory,  # noqa: F811
    screenshot,
    browser_context_options,
):
    log_in(page, "olivia", "pw-olivia")

    header = page.locator("header.top").bounding_box()
    screenshot("home")
    assert header["height"] <= 0.15 * PHONE["height"], header
    assert fits_the_screen(page)


@pytest.mark.parametrize("browser_context_options", [{"viewport": WIDE, "color_scheme": "dark"}])
def test_the_pages_follow_the_systems_dark_mode(
    page,
    company_directory,  # noqa: F811
    screenshot,
    browser_context_options,
):
    log_in(page, "alice", "pw-alice")

    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    screenshot("home-dark")
    red, green, blue = (int(float(v)) for v in re.findall(r"[\d.]+", background)[:3])
    assert red + green + blue < 3 * 80, background
    assert contrast_failures(page) == []
    page.goto("/requests/new")
    screenshot("request-dark")
    assert contrast_failures(page) == []


def test_every_page_has_a_favicon(page, company_directory):  # noqa: F811
    log_in(page, "alice", "pw-alice")

    href = page.locator('link[rel="icon"]').get_attribute("href")
    icon = page.request.get(href)
    legacy = page.request.get("/favicon.ico")

    assert icon.status == 200 and "svg" in icon.headers["content-type"]
    assert legacy.status == 200 and "svg" in legacy.headers["content-type"]
