"""The kubeconfig of a new token is shown once: a person can copy it or download it as a file
(buttons from Warden's own script file, under the Content-Security-Policy)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from clusters import serviceaccounts
from tests.clusters.sa_helpers import active, declare
from tests.e2e.conftest import sign_in_as
from tests.fixtures.browser import LAPTOP


@pytest.fixture
def browser_context_options() -> dict[str, Any]:
    return {"viewport": LAPTOP, "permissions": ["clipboard-read", "clipboard-write"]}


@pytest.fixture
def deployer(make_cluster: Any, people: Any) -> Any:
    """payments' deployer account with its first token; alice (payments) may see it once."""
    cluster, _sim = make_cluster()
    account = declare(
        cluster,
        people["payments"],
        consumer=(cluster, "default", "deployer-token"),
        show_to_owner=True,
    )
    serviceaccounts.rotate_account(account.pk)
    user = get_user_model().objects.create_user("alice")
    people["alice"].user = user
    people["alice"].save()
    return account


def test_the_kubeconfig_shown_once_can_be_copied_and_downloaded(page, deployer, people, screenshot):
    generation = active(deployer)
    sign_in_as(page, people["alice"].user)
    page.goto(f"/service-accounts/{deployer.pk}/generations/{generation.number}/token")
    page.get_by_role("button", name="Show it now").click()
    shown = page.locator("#kubeconfig").input_value()
    assert "kind: Config" in shown

    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("status")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == shown

    with page.expect_download() as caught:
        page.get_by_role("button", name="Download").click()
    download = caught.value
    assert download.suggested_filename.endswith(".kubeconfig")
    assert Path(download.path()).read_text() == shown
    screenshot("revealed")
