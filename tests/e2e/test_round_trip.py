"""The whole self-service in a real browser: a developer logs in with a directory password, asks
for access with the live preview, an approver approves it from the inbox, Warden writes the
RoleBinding into a kubesim cluster (read back with the official client), and the developer sees
it in force on My access. Screenshots of each page are kept as test artifacts."""

from __future__ import annotations

import re
from typing import Any

import pytest
from kubernetes import client as k8s_client
from playwright.sync_api import expect

from access import services
from access.models import AccessRequest, ApprovalPolicy, Person, Role, Team
from access.services import requests
from tests.clusters.conftest import official_client
from tests.e2e.conftest import contrast_failures, log_in
from tests.fixtures.browser import PHONE
from tests.fixtures.company import seed_defaults

WHY = "Rolling out the payments fix for INC-77"


@pytest.fixture
def company_directory(directory: Any, settings: Any) -> Any:
    """alice (payments) asks, judy (approvers) approves, olivia (warden-admins) operates; every
    password is checked by the real slapd. Staging needs one approval from the approvers."""
    settings.WARDEN_DIRECTORY = directory.settings(ADMIN_TEAMS=["warden-admins"])
    for username, name in (
        ("alice", "Alice Liddell"),
        ("judy", "Judy Approver"),
        ("olivia", "Olivia Operator"),
    ):
        directory.add_person(username, password=f"pw-{username}", display_name=name)
    directory.add_group("payments", people=["alice"])
    directory.add_group("approvers", people=["judy"])
    directory.add_group("warden-admins", people=["olivia"])
    seed_defaults()  # the live server's database is flushed between tests
    services.sync_directory()
    approvers = Team.objects.get(name="approvers")
    for policy in ApprovalPolicy.objects.all():
        policy.approver_teams.set([approvers])
    return directory


@pytest.fixture
def staging(make_cluster: Any) -> tuple[Any, Any]:
    """A staging cluster on kubesim with a payments namespace."""
    cluster, sim = make_cluster("staging")
    core = k8s_client.CoreV1Api(official_client(sim))
    core.create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name="payments")))
    return cluster, sim


def log_out(page: Any) -> None:
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()


def test_a_developer_asks_an_approver_approves_and_the_binding_lands_on_the_cluster(
    page, company_directory, staging, screenshot
):
    cluster, sim = staging
    # alice asks, watching the preview fill in as she picks
    log_in(page, "alice", "pw-alice")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Request access").click()
    page.get_by_role("radio", name="Developer").check()
    page.get_by_role("checkbox", name="Staging", exact=True).check()
    # the cluster picker follows the environment (htmx)
    expect(page.get_by_role("checkbox", name=re.compile(f"^{cluster.name}"))).to_be_visible()
    page.get_by_role("textbox", name="Namespaces").fill("payments")
    page.get_by_label("Justification").fill(WHY)
    preview = page.locator("#preview")
    expect(preview).to_contain_text(cluster.name)
    expect(preview).to_contain_text("ClusterRole edit")
    expect(preview).to_contain_text("1 approval by Judy Approver (team approvers)")
    assert not AccessRequest.objects.exists()  # a preview asks nothing yet
    assert contrast_failures(page) == []
    screenshot("request-access-with-preview")

    page.get_by_role("button", name="Submit request").click()
    expect(page.get_by_role("status")).to_contain_text("is waiting for approval")
    req = AccessRequest.objects.get()
    expect(page.get_by_role("heading", name=re.compile(f"Request #{req.pk}"))).to_be_visible()
    screenshot("request-detail")
    log_out(page)

    # judy approves it from her inbox, in one click
    log_in(page, "judy", "pw-judy")
    page.get_by_role("link", name="Approvals").click()
    row = page.get_by_role("row", name=re.compile(f"#{req.pk}"))
    expect(row).to_contain_text("Alice Liddell")
    expect(row).to_contain_text("1 cluster × 1 namespace")  # noqa: RUF001 - a times sign
    expect(row).to_contain_text("0 of 1 approval")
    assert contrast_failures(page) == []
    screenshot("inbox")
    row.get_by_role("button", name=f"Approve request #{req.pk}").click()
    expect(page.get_by_role("status")).to_contain_text("You approved 1 request.")
    expect(page.get_by_text("Nothing is waiting for your decision.")).to_be_visible()

    # the approval committed, the reconcile ran: the binding is on the cluster
    rbac = k8s_client.RbacAuthorizationV1Api(official_client(sim))
    binding = rbac.read_namespaced_role_binding("warden-developer", "payments")
    assert binding.role_ref.name == "edit"
    assert [(s.kind, s.name) for s in binding.subjects] == [("User", "alice")]
    assert binding.metadata.labels["app.kubernetes.io/managed-by"] == "warden"
    log_out(page)

    # alice sees it in force on My access
    log_in(page, "alice", "pw-alice")
    held = page.get_by_role("region", name="Where I have access")
    expect(held).to_contain_text("Developer")
    expect(held).to_contain_text(f"{cluster.name} · payments in force")
    expect(held).to_contain_text(f"request #{req.pk}")
    assert contrast_failures(page) == []
    screenshot("my-access")


@pytest.mark.parametrize("browser_context_options", [{"viewport": PHONE, "is_mobile": True}])
def test_on_a_phone_the_request_page_and_the_inbox_read_without_sideways_scrolling(
    page, company_directory, staging, screenshot
):
    cluster, _ = staging
    waiting = requests.submit_request(
        requester=Person.objects.get(username="alice"),
        role=Role.objects.get(name="developer"),
        environments=["staging"],
        namespaces=["payments"],
        justification=WHY,
    )
    log_in(page, "judy", "pw-judy")

    for path, label in (("/requests/new", "request"), ("/inbox/", "inbox")):
        page.goto(path)
        if label == "request":
            page.get_by_role("checkbox", name="Staging", exact=True).check()
            expect(page.locator("#preview")).to_contain_text(cluster.name)
        else:
            expect(
                page.get_by_role("button", name=f"Approve request #{waiting.pk}")
            ).to_be_visible()
        wider = page.evaluate(
            "document.documentElement.scrollWidth > document.documentElement.clientWidth"
        )
        widest = page.evaluate(
            "[...document.querySelectorAll('main *')].filter(e => e.getBoundingClientRect()"
            ".right > document.documentElement.clientWidth + 1).map(e => e.tagName + '.' + "
            "e.className + ' ' + (e.textContent || '').slice(0, 40)).slice(0, 5)"
        )
        assert not wider, f"{path} scrolls sideways on a phone: {widest}"
        screenshot(f"phone-{label}")
