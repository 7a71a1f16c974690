"""An operator's pages in a real browser: the fleet following a reconcile live, a cluster, grants,
"who can?", a person's access, policies, roles, the audit trail, health with a sync, reviews.
Each page is checked for contrast and saved as a screenshot artifact."""

from __future__ import annotations

import re
from typing import Any

import pytest
from kubernetes import client as k8s_client
from playwright.sync_api import expect

from access.models import Grant, Role, Team
from clusters.choices import ReconcileTrigger
from clusters.models import FleetReconcile
from clusters.services import reconcile_cluster
from tests.clusters.conftest import official_client
from tests.e2e.conftest import contrast_failures, log_in
from tests.e2e.test_round_trip import company_directory  # noqa: F401


@pytest.fixture
def fleet_with_access(company_directory: Any, make_cluster: Any) -> Any:  # noqa: F811
    """A staging cluster on kubesim where team payments holds developer in payments."""
    cluster, sim = make_cluster("staging")
    core = k8s_client.CoreV1Api(official_client(sim))
    core.create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name="payments")))
    Grant.objects.create(
        team=Team.objects.get(name="payments"),
        role=Role.objects.get(name="developer"),
        namespaces=["payments"],
        reason="the payments team works there",
    )
    reconcile_cluster(cluster.pk)
    return cluster


def visit(
    page: Any, screenshot: Any, link: str, heading: str | re.Pattern[str], label: str
) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=link).click()
    expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible()
    assert contrast_failures(page) == [], label
    screenshot(label)


def test_an_operator_walks_through_the_operator_pages(page, fleet_with_access, screenshot):
    cluster = fleet_with_access
    log_in(page, "olivia", "pw-olivia")

    # the fleet follows a reconcile as the cluster reports, without a reload
    FleetReconcile.objects.create(trigger=ReconcileTrigger.OPERATOR, cluster_ids=[cluster.pk])
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Fleet").click()
    progress = page.locator("#fleet-progress")
    expect(progress).to_contain_text("0 of 1 cluster done")
    reconcile_cluster(cluster.pk, trigger=ReconcileTrigger.OPERATOR)  # a worker reports
    expect(progress).to_contain_text("1 of 1 cluster done")
    expect(progress.locator("[hx-trigger]")).to_have_count(0)  # done: polling stopped
    assert contrast_failures(page) == []
    screenshot("fleet")

    page.get_by_role("link", name=cluster.name, exact=True).click()
    expect(page.get_by_role("heading", name=re.compile(cluster.name), level=1)).to_be_visible()
    assert contrast_failures(page) == []
    screenshot("cluster-detail")

    visit(page, screenshot, "Grants", "Grants", "grants")

    visit(page, screenshot, "Who can?", "Who can do it?", "who-can")
    page.get_by_label("Verb").fill("delete")
    page.get_by_label("Resource").fill("pods")
    page.get_by_label("Namespace").fill("payments")
    page.get_by_label("Cluster").select_option(cluster.name)
    page.get_by_role("button", name="Ask").click()
    answer = page.get_by_role("heading", name=re.compile("can delete pods"))
    expect(answer).to_have_text(re.compile(f"^1 person can delete pods .* on {cluster.name}$"))
    expect(page.get_by_role("region", name="People")).to_contain_text("alice")
    expect(page).to_have_url(re.compile(r"/who-can/\?verb=delete"))
    assert contrast_failures(page) == []
    screenshot("who-can-answer")

    visit(page, screenshot, "People", "What can a person do?", "people")
    page.get_by_label("Username, name or email").fill("ali")
    page.get_by_role("button", name="Find").click()
    page.get_by_role("link", name="alice").click()
    grants = page.get_by_role("region", name="Grants in force")
    expect(grants).to_contain_text("team payments")
    expect(grants).to_contain_text(f"{cluster.name}")
    expect(grants).to_contain_text("in force")
    assert contrast_failures(page) == []
    screenshot("person")

    visit(page, screenshot, "Policies", "Approval policies", "policies")
    visit(page, screenshot, "Roles", "Roles", "roles")
    visit(page, screenshot, "Audit", "Audit trail", "audit")

    visit(page, screenshot, "Health", "Health", "health-before")
    page.get_by_role("button", name="Sync now").click()  # runs at once here (eager Celery)
    expect(page.locator("#sync-progress")).to_contain_text(
        re.compile(r"Last sync #\d+ \(operator\)")
    )
    expect(page.locator("#sync-progress")).to_contain_text("Succeeded")
    assert contrast_failures(page) == []
    screenshot("health")

    visit(page, screenshot, "Reviews", "Access reviews", "reviews")
