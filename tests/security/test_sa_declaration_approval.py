"""Issue 15, item 2: self-service service accounts skipped approval and reached anywhere.

A declaration (and any later change that widens it) is an access request for the account, one
per role, decided by the same approval policies as a person's request for the same role and
reach: approver teams, count, no self-approval. Until approved nothing reaches a cluster and no
token is issued. Operators get no bypass.
"""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from kubernetes import client as k8s_client

from access.choices import RequestState
from access.models import AccessRequest, AuditEvent, Role
from clusters import serviceaccounts
from clusters.choices import AccountState, GenerationState
from clusters.models import LegacyToken, ManagedServiceAccount, TokenGeneration
from tests.security.sa_world import (
    api_body,
    bindings_naming,
    declare_on_page,
    page_form,
    service_account_on,
)

pytestmark = pytest.mark.django_db


def test_a_team_member_cannot_put_a_developer_account_on_prod_over_the_api_without_approval(
    api, company, make_cluster, django_capture_on_commit_callbacks
):
    cluster, sim = make_cluster(environment="prod", tier="tier-0")

    with django_capture_on_commit_callbacks(execute=True):
        made = api("alice").post("/api/v1/service-accounts/", api_body(cluster), format="json")

    assert made.status_code == 201, made.json()
    assert made.json()["state"] == "pending"
    (req,) = AccessRequest.objects.filter(for_service_account="default/deployer")
    assert (req.requester.username, req.role.name, req.state) == ("alice", "developer", "pending")
    assert req.approvals_required == 2  # prod's policy, as for alice herself
    assert [t.name for t in req.approver_teams.all()] == ["approvers"]
    assert service_account_on(sim) is None and bindings_naming(sim) == []
    assert not TokenGeneration.objects.exists()


def test_a_team_member_cannot_do_it_on_the_page_either(
    browser_as, company, make_cluster, django_capture_on_commit_callbacks
):
    cluster, sim = make_cluster(environment="prod", tier="tier-0")

    with django_capture_on_commit_callbacks(execute=True):
        page = declare_on_page(browser_as("alice"), page_form(company.teams["payments"], cluster))

    assert page.status_code == 302
    account = ManagedServiceAccount.objects.get()
    assert account.state == AccountState.PENDING
    said = " ".join(str(m) for m in get_messages(page.wsgi_request))
    assert "approv" in said
    assert service_account_on(sim) is None
    assert not TokenGeneration.objects.exists()


def test_a_token_may_not_outlive_what_the_policy_allows_for_one_approval(
    api, browser_as, company, make_cluster
):
    cluster, _sim = make_cluster(environment="prod", tier="tier-0")
    long_lived = api_body(cluster, rotation_period="2d", token_lifetime="3d")

    made = api("alice").post("/api/v1/service-accounts/", long_lived, format="json")
    page = declare_on_page(
        browser_as("bob"),
        page_form(company.teams["payments"], cluster, rotation_period="2d", token_lifetime="3d"),
    )

    assert made.status_code == 400
    assert "At most 1 day" in str(made.json()) or "At most 24 hours" in str(made.json())
    assert page.status_code == 200 and "At most" in page.content.decode()
    assert not ManagedServiceAccount.objects.exists()


def test_the_declarer_cannot_approve_their_own_account_and_one_approval_is_not_two(
    api, company, make_cluster, django_capture_on_commit_callbacks
):
    # given: judy (an approver) declares an account for her own team on prod
    cluster, sim = make_cluster(environment="prod", tier="tier-0")
    body = api_body(cluster, owner_team="approvers", roles=["viewer"])
    with django_capture_on_commit_callbacks(execute=True):
        made = api("judy").post("/api/v1/service-accounts/", body, format="json")
    (request_id,) = made.json()["approval_requests"]

    # when: she approves it herself, then peggy approves once
    own = api("judy").post(f"/api/v1/requests/{request_id}/approve/", {}, format="json")
    with django_capture_on_commit_callbacks(execute=True):
        first = api("peggy").post(f"/api/v1/requests/{request_id}/approve/", {}, format="json")

    # then: her own approval is refused, and one approval of two changes nothing on the cluster
    assert own.status_code == 403
    assert first.status_code == 200 and first.json()["state"] == "pending"
    assert ManagedServiceAccount.objects.get().state == AccountState.PENDING
    assert service_account_on(sim) is None


def test_once_the_policy_is_satisfied_the_account_and_its_first_token_appear(
    api, company, make_cluster, django_capture_on_commit_callbacks
):
    cluster, sim = make_cluster()  # dev: one approval
    with django_capture_on_commit_callbacks(execute=True):
        made = api("alice").post("/api/v1/service-accounts/", api_body(cluster), format="json")
    (request_id,) = made.json()["approval_requests"]
    assert service_account_on(sim) is None

    with django_capture_on_commit_callbacks(execute=True):
        api("judy").post(f"/api/v1/requests/{request_id}/approve/", {}, format="json")

    account = ManagedServiceAccount.objects.get()
    assert account.state == AccountState.ACTIVE
    assert account.approved_covers == {"developer": ["dev/tier-2"]}
    assert service_account_on(sim) is not None
    assert TokenGeneration.objects.filter(account=account).count() == 1


def test_a_denied_declaration_leaves_nothing_behind(
    api, company, make_cluster, django_capture_on_commit_callbacks
):
    cluster, sim = make_cluster()
    with django_capture_on_commit_callbacks(execute=True):
        made = api("alice").post("/api/v1/service-accounts/", api_body(cluster), format="json")
    (request_id,) = made.json()["approval_requests"]

    with django_capture_on_commit_callbacks(execute=True):
        denied = api("judy").post(
            f"/api/v1/requests/{request_id}/deny/", {"comment": "not on my watch"}, format="json"
        )

    assert denied.status_code == 200
    assert ManagedServiceAccount.objects.get().state == AccountState.RETIRED
    assert AuditEvent.objects.filter(action="serviceaccount.denied").exists()
    assert service_account_on(sim) is None


def test_a_pending_account_cannot_be_rotated_into_a_token(api, company, make_cluster):
    cluster, _sim = make_cluster(environment="prod", tier="tier-0")
    pk = api("alice").post("/api/v1/service-accounts/", api_body(cluster), format="json").json()
    rotated = api("bob").post(f"/api/v1/service-accounts/{pk['id']}/rotate/")

    assert rotated.status_code == 400
    assert not TokenGeneration.objects.exists()


def test_a_later_change_that_widens_the_account_waits_for_approval_too(
    api, company, make_cluster, django_capture_on_commit_callbacks
):
    # given: an approved viewer account on a dev cluster, and a prod cluster next to it
    dev, _dev_sim = make_cluster()
    prod, prod_sim = make_cluster(environment="prod", tier="tier-0")
    with django_capture_on_commit_callbacks(execute=True):
        made = api("alice").post(
            "/api/v1/service-accounts/", api_body(dev, roles=["viewer"]), format="json"
        )
    assert made.json()["state"] == "active"  # dev viewer: the policy grants it at once
    pk = made.json()["id"]

    # when: bob (same team) widens it to prod with a stronger role
    with django_capture_on_commit_callbacks(execute=True):
        changed = api("bob").patch(
            f"/api/v1/service-accounts/{pk}/",
            {"clusters": [dev.name, prod.name], "roles": ["viewer", "developer"]},
            format="json",
        )

    # then: the account is as it was until the policy's two approvals are given
    assert changed.status_code == 200, changed.json()
    account = ManagedServiceAccount.objects.get()
    assert account.clusters == [dev.name]
    assert [r.name for r in account.roles.all()] == ["viewer"]
    assert account.pending_change["clusters"] == [dev.name, prod.name]
    waiting = AccessRequest.objects.filter(state=RequestState.PENDING)
    assert sorted(r.role.name for r in waiting) == ["developer", "viewer"]
    assert {r.approvals_required for r in waiting} == {2}
    assert service_account_on(prod_sim) is None


def test_an_operator_gets_no_bypass(api, company, make_cluster, django_capture_on_commit_callbacks):
    cluster, sim = make_cluster(environment="staging", tier="tier-1")

    with django_capture_on_commit_callbacks(execute=True):
        made = api("olivia").post(
            "/api/v1/service-accounts/", api_body(cluster, roles=["admin"]), format="json"
        )
    (request_id,) = made.json()["approval_requests"]
    own = api("olivia").post(f"/api/v1/requests/{request_id}/approve/", {}, format="json")

    assert made.json()["state"] == "pending"
    assert own.status_code in (403, 404)  # the policy names approvers; she is not one
    assert service_account_on(sim) is None


def test_a_label_selector_is_judged_by_every_place_it_could_ever_reach(
    api, company, make_cluster, django_capture_on_commit_callbacks
):
    # given: only dev clusters today
    make_cluster()

    # when: a selector (no names) asks for developer
    with django_capture_on_commit_callbacks(execute=True):
        made = api("alice").post(
            "/api/v1/service-accounts/",
            api_body(clusters=[], cluster_selector={"team": "payments"}),
            format="json",
        )

    # then: a prod cluster may match it one day, so prod's policy (two approvals) decides
    assert made.status_code == 201, made.json()
    (req,) = AccessRequest.objects.all()
    assert req.approvals_required == 2
    assert "prod/tier-0" in req.covers


def test_an_approver_cannot_approve_less_than_the_account_will_get(
    api, company, make_cluster, django_capture_on_commit_callbacks
):
    # narrowing would approve fewer namespaces than the account is then given
    cluster, _sim = make_cluster()
    body = api_body(cluster, namespaces=["default", "payments-*"])
    with django_capture_on_commit_callbacks(execute=True):
        made = api("alice").post("/api/v1/service-accounts/", body, format="json")
    (request_id,) = made.json()["approval_requests"]

    narrowed = api("judy").post(
        f"/api/v1/requests/{request_id}/approve/", {"namespaces": ["default"]}, format="json"
    )

    assert narrowed.status_code == 400
    assert ManagedServiceAccount.objects.get().state == AccountState.PENDING


def test_an_approver_decides_a_service_account_on_the_request_page(
    api, browser_as, company, make_cluster, django_capture_on_commit_callbacks
):
    # given: alice's developer account on dev, waiting for one approval
    cluster, sim = make_cluster()
    with django_capture_on_commit_callbacks(execute=True):
        made = api("alice").post("/api/v1/service-accounts/", api_body(cluster), format="json")
    (request_id,) = made.json()["approval_requests"]
    judy = browser_as("judy")

    # when: judy reads the request and approves it on its page
    page = judy.get(f"/requests/{request_id}/").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        judy.post(f"/requests/{request_id}/approve", {"comment": "ok"})

    # then: the page said what it was for, and the account is on its cluster
    assert "service account <strong>default/deployer</strong>" in page
    assert "Narrow before approving" not in page
    assert ManagedServiceAccount.objects.get().state == AccountState.ACTIVE
    assert service_account_on(sim) is not None


def test_a_longer_token_lifetime_is_a_widening_too(
    api, company, make_cluster, django_capture_on_commit_callbacks
):
    # given: an approved viewer account on dev (granted at once)
    cluster, _sim = make_cluster()
    with django_capture_on_commit_callbacks(execute=True):
        made = api("alice").post(
            "/api/v1/service-accounts/", api_body(cluster, roles=["viewer"]), format="json"
        )
    pk = made.json()["id"]

    # when: bob makes its tokens live a year
    changed = api("bob").patch(
        f"/api/v1/service-accounts/{pk}/",
        {"rotation_period": "300d", "token_lifetime": "365d"},
        format="json",
    )

    # then: the policy's longest duration (90 days for dev viewers) refuses it
    assert changed.status_code == 400, changed.json()
    assert ManagedServiceAccount.objects.get().token_lifetime.days < 1


def test_a_waiting_change_is_withdrawn_when_a_newer_one_replaces_it(
    api, company, make_cluster, django_capture_on_commit_callbacks
):
    # given: a viewer account on dev, and bob's waiting change that adds developer
    cluster, _sim = make_cluster()
    with django_capture_on_commit_callbacks(execute=True):
        pk = (
            api("alice")
            .post("/api/v1/service-accounts/", api_body(cluster, roles=["viewer"]), format="json")
            .json()["id"]
        )
        api("bob").patch(
            f"/api/v1/service-accounts/{pk}/", {"roles": ["viewer", "developer"]}, format="json"
        )
    (waiting,) = AccessRequest.objects.filter(state=RequestState.PENDING)

    # when: alice changes only its description (no approval needed)
    with django_capture_on_commit_callbacks(execute=True):
        api("alice").patch(
            f"/api/v1/service-accounts/{pk}/", {"description": "ci deployer"}, format="json"
        )

    # then: the older proposal cannot be approved later to undo her change
    waiting.refresh_from_db()
    assert waiting.state == RequestState.CANCELLED
    account = ManagedServiceAccount.objects.get()
    assert account.pending_change is None and account.description == "ci deployer"


def test_an_operators_legacy_migration_waits_for_approval_before_taking_anything_over(
    api, browser_as, company, make_cluster, rbac, django_capture_on_commit_callbacks
):
    # given: a legacy token's ServiceAccount, found by the scan
    cluster, sim = make_cluster()
    core = rbac.core(sim)
    core.create_namespaced_service_account(
        "default",
        k8s_client.V1ServiceAccount(
            metadata=k8s_client.V1ObjectMeta(name="builder", labels={"team": "platform"})
        ),
    )
    core.create_namespaced_secret(
        "default",
        k8s_client.V1Secret(
            metadata=k8s_client.V1ObjectMeta(
                name="builder-token",
                annotations={"kubernetes.io/service-account.name": "builder"},
            ),
            type="kubernetes.io/service-account-token",
        ),
    )
    serviceaccounts.scan_legacy_tokens(cluster.pk)
    found = LegacyToken.objects.get()

    # when: olivia migrates it with the developer role
    with django_capture_on_commit_callbacks(execute=True):
        page = browser_as("olivia").post(
            reverse("sa-legacy-migrate", args=[found.pk]),
            {
                "owner_team": company.teams["payments"].pk,
                "roles": [Role.objects.get(name="developer").pk],
                "rotation_period": "7d",
                "grace_period": "1d",
                "token_lifetime": "9d",
                "show_to_owner": "on",
                "reason": "rotate the builder's token",
            },
        )

    # then: the account waits for the dev policy's approver, and the ServiceAccount is untouched
    assert page.status_code == 302, page.content.decode()[-2000:]
    account = ManagedServiceAccount.objects.get(name="builder")
    assert account.state == AccountState.PENDING
    labels = core.read_namespaced_service_account("builder", "default").metadata.labels
    assert labels == {"team": "platform"}

    # when: judy approves it
    (request_id,) = account.approval_requests.values_list("pk", flat=True)
    with django_capture_on_commit_callbacks(execute=True):
        api("judy").post(f"/api/v1/requests/{request_id}/approve/", {}, format="json")

    # then: taken over, and its first managed token issued
    labels = core.read_namespaced_service_account("builder", "default").metadata.labels
    assert labels["app.kubernetes.io/managed-by"] == "warden"
    account.refresh_from_db()
    assert account.state == AccountState.ACTIVE
    assert account.generations.filter(state=GenerationState.ACTIVE).count() == 1


def test_an_accounts_waiting_request_does_not_stop_its_declarer_asking_for_herself(
    api, company, make_cluster, django_capture_on_commit_callbacks
):
    cluster, _sim = make_cluster()
    with django_capture_on_commit_callbacks(execute=True):
        api("alice").post("/api/v1/service-accounts/", api_body(cluster), format="json")

    own = api("alice").post(
        "/api/v1/requests/",
        {
            "role": "developer",
            "clusters": [cluster.name],
            "namespaces": ["default"],
            "justification": "Debugging the deployer by hand.",
        },
        format="json",
    )

    assert own.status_code == 201, own.json()
