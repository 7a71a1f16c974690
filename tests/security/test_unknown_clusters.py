"""Issue 15, item 4: access that reaches clusters its approval never looked at.

Named clusters that do not exist yet, scopes that reach environments with no cluster yet, and
clusters whose environment or tier is edited after the approval: the policy that approved a
grant must cover every environment/tier it can ever reach, and a grant never binds where its
approval did not look (it shows there as pending, with the reason).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from access.choices import RequestState
from access.models import AccessRequest, Grant, Role
from clusters import services
from clusters.choices import ReconcileTrigger
from clusters.models import ManagedServiceAccount
from tests.security.sa_world import api_body

pytestmark = pytest.mark.django_db
WHY = "Deploying the payments service this sprint."


def ask_over_api(api, who, **scope):
    body = {"role": "developer", "justification": WHY, "namespaces": ["default"], **scope}
    return api(who).post("/api/v1/requests/", body, format="json")


def test_a_request_naming_a_cluster_that_does_not_exist_yet_is_refused(api, company, make_cluster):
    # given: a dev cluster, and the name a prod cluster will have one day
    dev, _sim = make_cluster()

    # when: alice asks for both (the dev policy would have been the only one to look)
    asked = ask_over_api(api, "alice", clusters=[dev.name, "prod-next"])

    # then
    assert asked.status_code == 400, asked.json()
    assert "No cluster is called prod-next" in str(asked.json())
    assert not AccessRequest.objects.exists()


def test_a_service_account_naming_an_unknown_cluster_is_refused(api, company, make_cluster):
    dev, _sim = make_cluster()

    made = api("alice").post(
        "/api/v1/service-accounts/",
        api_body(dev, clusters=[dev.name, "prod-next"], roles=["viewer"]),
        format="json",
    )

    assert made.status_code == 400, made.json()
    assert "prod-next" in str(made.json())
    assert not ManagedServiceAccount.objects.exists()


def test_a_scope_is_judged_by_the_environments_it_can_reach_not_the_clusters_there_today(
    api, company, make_cluster
):
    # given: no prod cluster yet
    make_cluster()

    # when: alice asks for developer on every cluster
    asked = ask_over_api(api, "alice")

    # then: prod's policy (two approvals, one day at most) decides, for when prod joins
    assert asked.status_code == 201, asked.json()
    req = AccessRequest.objects.get()
    assert req.approvals_required == 2
    assert req.duration <= timedelta(days=1)
    assert "prod/tier-0" in req.covers


def test_on_the_page_too(browser_as, company, make_cluster):
    make_cluster()

    page = browser_as("alice").post(
        "/requests/new",
        {
            "role": company_role("developer"),
            "namespaces": "default",
            "justification": WHY,
            "submit": "1",
        },
    )

    assert page.status_code == 302, page.content.decode()[-3000:]
    req = AccessRequest.objects.get()
    assert req.approvals_required == 2 and "prod/tier-0" in req.covers


def company_role(name):
    return Role.objects.get(name=name).pk


def test_a_grant_does_not_follow_its_cluster_into_an_environment_it_was_not_approved_for(
    api, browser_as, company, make_cluster, rbac, django_capture_on_commit_callbacks
):
    # given: alice's developer access to a dev cluster, approved under the dev policy
    dev, sim = make_cluster()
    with django_capture_on_commit_callbacks(execute=True):
        request_id = ask_over_api(api, "alice", clusters=[dev.name]).json()["id"]
        api("judy").post(f"/api/v1/requests/{request_id}/approve/", {}, format="json")
    assert "alice" in rbac.subjects(sim, "warden-developer", "default")

    # when: an operator moves the cluster to prod (edited, or re-registered by discovery)
    services.update_cluster(
        dev,
        environment="prod",
        tier="tier-0",
        labels={},
        user_prefix="",
        group_prefix="",
        bind_groups=True,
        api_url=dev.api_url,
        ca_bundle=dev.ca_bundle,
    )
    run = services.reconcile_cluster(dev.pk, trigger=ReconcileTrigger.CHANGE)

    # then: her binding is gone there, and the grant says why it is pending
    assert "alice" not in rbac.subjects(sim, "warden-developer", "default")
    grant = Grant.objects.get()
    reasons = " ".join(run.pending.get(str(grant.pk), []))
    assert "its approval did not cover prod/tier-0" in reasons
    assert AccessRequest.objects.get().state == RequestState.ACTIVE
    # her "My access" page says so too
    home = browser_as("alice").get("/").content.decode()
    assert "its approval did not cover prod/tier-0" in home
    # and asking again there is not "already held": it goes to prod's two approvals
    again = ask_over_api(api, "alice", clusters=[dev.name], duration="4h")
    assert again.status_code == 201, again.json()
    assert again.json()["approvals_required"] == 2


def test_a_service_account_does_not_follow_its_cluster_into_prod_either(
    api, company, make_cluster, rbac, django_capture_on_commit_callbacks
):
    # given: a viewer account on a dev cluster (dev viewer: granted at once)
    dev, sim = make_cluster()
    with django_capture_on_commit_callbacks(execute=True):
        made = api("alice").post(
            "/api/v1/service-accounts/", api_body(dev, roles=["viewer"]), format="json"
        )
    assert made.json()["state"] == "active", made.json()
    assert rbac.bindings(sim, "default").get("warden-sa:default:deployer:viewer") is not None

    # when: the cluster becomes prod
    services.update_cluster(
        dev,
        environment="prod",
        tier="tier-0",
        labels={},
        user_prefix="",
        group_prefix="",
        bind_groups=True,
        api_url=dev.api_url,
        ca_bundle=dev.ca_bundle,
    )
    run = services.reconcile_cluster(dev.pk, trigger=ReconcileTrigger.CHANGE)

    # then: its binding is gone, pending with the reason
    assert rbac.bindings(sim, "default").get("warden-sa:default:deployer:viewer") is None
    account = ManagedServiceAccount.objects.get()
    assert "did not cover prod/tier-0" in " ".join(run.pending.get(f"sa:{account.pk}", []))
