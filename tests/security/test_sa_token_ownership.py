"""Issue 15, item 1: a token for a ServiceAccount Warden did not create and does not own.

The attacker declares a managed account whose namespace/name is an existing ServiceAccount (a
controller's in kube-system, Warden's own manager, or any account someone else made) and waits
for rotation to hand them its token.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from kubernetes import client as k8s_client

from access.models import AuditEvent, Role
from clusters import serviceaccounts
from clusters.choices import GenerationState, RotationStatus
from clusters.models import ManagedServiceAccount, TokenGeneration
from tests.clusters.conftest import official_client

pytestmark = pytest.mark.django_db


def form(cluster, **overrides):
    data = {
        "name": "clusterrole-aggregation-controller",
        "namespace": "kube-system",
        "owner_team": "",
        "roles": [],
        "namespaces": "",
        "clusters": cluster.name,
        "cluster_selector": "",
        "rotation_period": "1d",
        "grace_period": "1h",
        "token_lifetime": "2d",
        "show_to_owner": "on",
    }
    data.update(overrides)
    return data


def api_body(cluster, **overrides):
    data = {
        "name": "clusterrole-aggregation-controller",
        "namespace": "kube-system",
        "owner_team": "payments",
        "roles": ["viewer"],
        "clusters": [cluster.name],
        "rotation_period": "1d",
        "grace_period": "1h",
        "token_lifetime": "2d",
    }
    data.update(overrides)
    return data


def token_requests(sim) -> list[str]:
    return [e["path"] for e in sim.request_log if e["path"].endswith("/token")]


def someone_elses_service_account(sim, namespace: str, name: str) -> None:
    k8s_client.CoreV1Api(official_client(sim)).create_namespaced_service_account(
        namespace, k8s_client.V1ServiceAccount(metadata=k8s_client.V1ObjectMeta(name=name))
    )


@pytest.mark.parametrize(
    ("namespace", "name"),
    [
        ("kube-system", "clusterrole-aggregation-controller"),
        ("kube-public", "default"),
        ("kube-node-lease", "default"),
        ("warden-system", "warden-manager"),
    ],
)
def test_a_team_member_cannot_declare_an_account_in_a_protected_namespace_on_the_page(
    company, browser_as, make_cluster, namespace, name
):
    cluster, _sim = make_cluster()
    alice = browser_as("alice")

    page = alice.post(
        reverse("sa-create"),
        form(cluster, namespace=namespace, name=name, owner_team=company.teams["payments"].pk),
    )

    assert page.status_code == 200
    assert "SERVICE_ACCOUNT_PROTECTED_NAMESPACES" in page.content.decode()
    assert not ManagedServiceAccount.objects.exists()


def test_a_team_member_cannot_declare_an_account_in_kube_system_over_the_api(
    api, company, make_cluster
):
    cluster, _sim = make_cluster()

    made = api("alice").post("/api/v1/service-accounts/", api_body(cluster), format="json")

    assert made.status_code == 400, made.json()
    assert not ManagedServiceAccount.objects.exists()


def test_an_operator_cannot_declare_wardens_own_manager_account_either(api, company, make_cluster):
    cluster, _sim = make_cluster()

    made = api("olivia").post(
        "/api/v1/service-accounts/",
        api_body(cluster, namespace="warden-system", name="warden-manager", roles=[]),
        format="json",
    )

    assert made.status_code == 400, made.json()
    assert not ManagedServiceAccount.objects.exists()


def test_roles_cannot_be_aimed_at_kube_system_through_a_pattern(api, company, make_cluster):
    cluster, _sim = make_cluster()

    made = api("alice").post(
        "/api/v1/service-accounts/",
        api_body(cluster, namespace="default", name="sneaky", namespaces=["kube-*"]),
        format="json",
    )

    assert made.status_code == 400, made.json()
    assert not ManagedServiceAccount.objects.exists()


def _account_over(cluster, company, namespace: str, name: str) -> ManagedServiceAccount:
    """An account already in the database for someone else's ServiceAccount (declared before
    the refusal existed, or straight into the database)."""
    account = ManagedServiceAccount.objects.create(
        name=name,
        namespace=namespace,
        owner_team=company.teams["payments"],
        clusters=[cluster.name],
        rotation_period=timedelta(days=1),
        grace_period=timedelta(hours=1),
        token_lifetime=timedelta(days=2),
        show_to_owner=True,
    )
    account.roles.set([Role.objects.get(name="viewer")])
    return account


def test_rotation_never_requests_a_token_for_a_service_account_it_does_not_own(
    company, make_cluster
):
    cluster, sim = make_cluster()
    someone_elses_service_account(sim, "default", "ci-bot")
    account = _account_over(cluster, company, "default", "ci-bot")
    sim.request_log.clear()

    run = serviceaccounts.rotate_account(account.pk, force=True)

    assert run is not None and run.status == RotationStatus.FAILED
    assert "not Warden's" in run.error
    assert token_requests(sim) == []
    generation = TokenGeneration.objects.get(account=account)
    assert generation.issued == {} and generation.sealed_tokens == ""
    # nothing of Warden's was written next to it either (no bound Secret)
    secrets = k8s_client.CoreV1Api(official_client(sim)).list_namespaced_secret("default")
    assert [s.metadata.name for s in secrets.items if s.metadata.name.startswith("ci-bot")] == []


def _generation_issued_before_the_fix(account, cluster, number: int) -> TokenGeneration:
    return TokenGeneration.objects.create(
        account=account,
        number=number,
        state=GenerationState.ACTIVE,
        trigger="declared",
        issued={cluster.name: {"secret": "x", "uid": "u", "expires_at": "", "server": ""}},
        sealed_tokens=json.dumps({cluster.name: "stolen-token-value"}),
        reveal_pending=True,
    )


def test_a_token_issued_before_the_fix_is_not_revealed_on_the_page(
    company, browser_as, make_cluster
):
    cluster, sim = make_cluster()
    someone_elses_service_account(sim, "default", "ci-bot")
    account = _account_over(cluster, company, "default", "ci-bot")
    generation = _generation_issued_before_the_fix(account, cluster, 1)

    page = browser_as("alice").post(reverse("sa-reveal", kwargs={"pk": account.pk, "number": 1}))

    assert page.status_code == 410 and "stolen-token-value" not in page.content.decode()
    generation.refresh_from_db()
    assert generation.sealed_tokens == "" and not generation.reveal_pending
    assert AuditEvent.objects.filter(action="serviceaccount.token_withheld").exists()


def test_a_token_issued_before_the_fix_is_not_revealed_over_the_api(api, company, make_cluster):
    cluster, sim = make_cluster()
    someone_elses_service_account(sim, "default", "ci-bot")
    account = _account_over(cluster, company, "default", "ci-bot")
    generation = _generation_issued_before_the_fix(account, cluster, 1)

    answer = api("bob").post(f"/api/v1/service-accounts/{account.pk}/generations/1/reveal/")

    assert answer.status_code == 410 and "stolen-token-value" not in str(answer.content)
    generation.refresh_from_db()
    assert generation.sealed_tokens == "" and not generation.reveal_pending


def test_a_generation_left_unfinished_is_not_delivered_for_a_service_account_it_does_not_own(
    company, make_cluster
):
    # given: a generation started before the fix, its token already got, not yet delivered
    cluster, sim = make_cluster()
    someone_elses_service_account(sim, "default", "ci-bot")
    account = _account_over(cluster, company, "default", "ci-bot")
    serviceaccounts.add_delivery_target(
        account, kind="webhook", url="https://collector.example/hook", signing_key="k" * 40
    )
    TokenGeneration.objects.create(
        account=account,
        number=1,
        state=GenerationState.PENDING,
        trigger="declared",
        issued={cluster.name: {"secret": "x", "uid": "u", "expires_at": "", "server": ""}},
        sealed_tokens=json.dumps({cluster.name: "stolen-token-value"}),
    )

    # when: a worker resumes it
    run = serviceaccounts.rotate_account(account.pk)

    # then: it stops before delivering, and the generation is not put in force
    assert run is not None and run.status == RotationStatus.FAILED
    assert "not Warden's" in run.error
    generation = TokenGeneration.objects.get(account=account)
    assert generation.state == GenerationState.PENDING and generation.delivered == []
