"""The service-account pages: who sees what, declaring within policy, rotate now, the token
shown once, and the legacy-token report with its migration and deletion."""

from __future__ import annotations

import base64

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from kubernetes import client as k8s_client

from access.models import AuditEvent
from clusters import serviceaccounts
from clusters.choices import GenerationState, LegacyTokenState, RotationTrigger
from clusters.models import LegacyToken, ManagedServiceAccount
from tests.clusters.conftest import official_client
from tests.clusters.sa_helpers import active, authenticated_as, declare, delivered_token

pytestmark = pytest.mark.django_db


def login(person=None, staff=False, name=None):
    user = get_user_model().objects.create_user(name or person.username, is_staff=staff)
    if person is not None:
        person.user = user
        person.save()
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alice(people):
    """In payments, which owns the account."""
    return login(people["alice"])


@pytest.fixture
def carol(people):
    """In sre: an outsider to payments' accounts."""
    return login(people["carol"])


@pytest.fixture
def olivia(db):
    """An operator."""
    return login(staff=True, name="olivia")


@pytest.fixture
def deployer(make_cluster, people):
    cluster, sim = make_cluster()
    account = declare(
        cluster,
        people["payments"],
        consumer=(cluster, "default", "deployer-token"),
        show_to_owner=True,
    )
    serviceaccounts.rotate_account(account.pk)
    return account, cluster, sim


def test_the_owner_team_sees_its_account_and_an_outsider_does_not(deployer, alice, carol):
    account, _cluster, _sim = deployer
    detail = reverse("sa-detail", args=[account.pk])

    assert "default/deployer" in alice.get(reverse("sa-list")).content.decode()
    assert alice.get(detail).status_code == 200
    assert "default/deployer" not in carol.get(reverse("sa-list")).content.decode()
    assert carol.get(detail).status_code == 404
    assert carol.post(reverse("sa-rotate", args=[account.pk])).status_code == 404


def test_a_team_member_declares_an_account_with_a_self_service_role(
    make_cluster, people, catalogue, alice
):
    cluster, _sim = make_cluster()
    form = {
        "name": "ci-deployer",
        "namespace": "default",
        "owner_team": people["payments"].pk,
        "roles": [catalogue["viewer"].pk],
        "clusters": cluster.name,
        "rotation_period": "7d",
        "grace_period": "1d",
        "token_lifetime": "9d",
        "show_to_owner": "on",
    }

    response = alice.post(reverse("sa-create"), form)

    account = ManagedServiceAccount.objects.get(name="ci-deployer")
    assert response.status_code == 302
    assert response["Location"] == reverse("sa-detail", args=[account.pk])
    assert [r.name for r in account.roles.all()] == ["viewer"]
    assert AuditEvent.objects.filter(action="serviceaccount.declared").count() == 1


def test_a_team_member_may_not_give_an_operator_only_role_nor_use_another_team(
    make_cluster, people, catalogue, alice
):
    cluster, _sim = make_cluster()
    form = {
        "name": "ci-admin",
        "namespace": "default",
        "owner_team": people["payments"].pk,
        "roles": [catalogue["admin"].pk],
        "clusters": cluster.name,
        "rotation_period": "7d",
        "grace_period": "1d",
        "token_lifetime": "9d",
    }
    assert alice.post(reverse("sa-create"), form).status_code == 403
    form.update(roles=[catalogue["viewer"].pk], owner_team=people["sre"].pk)
    response = alice.post(reverse("sa-create"), form)
    assert response.status_code == 200  # the form says sre is not a choice
    assert not ManagedServiceAccount.objects.filter(name="ci-admin").exists()


def test_bad_durations_are_explained(make_cluster, people, alice):
    cluster, _sim = make_cluster()
    form = {
        "name": "ci",
        "namespace": "default",
        "owner_team": people["payments"].pk,
        "clusters": cluster.name,
        "rotation_period": "a week",
        "grace_period": "1d",
        "token_lifetime": "1h",
    }
    page = alice.post(reverse("sa-create"), form).content.decode()
    assert "Write a whole number of days, hours or minutes" in page


def test_rotate_now_makes_a_new_generation(deployer, alice, django_capture_on_commit_callbacks):
    account, _cluster, sim = deployer
    old = delivered_token(sim)

    with django_capture_on_commit_callbacks(execute=True):
        response = alice.post(reverse("sa-rotate", args=[account.pk]))

    assert response.status_code == 302
    assert active(account).number == 2
    assert active(account).trigger == RotationTrigger.PERSON  # alice asked, not an operator
    assert active(account).get_trigger_display() == "Requested by a person"
    assert active(account).requested_by.username == "alice"
    assert delivered_token(sim) != old
    assert alice.get(reverse("sa-rotate", args=[account.pk])).status_code == 405


def test_forms_need_the_csrf_token(deployer, people):
    account, _cluster, _sim = deployer
    client = Client(enforce_csrf_checks=True)
    client.force_login(get_user_model().objects.create_user("olivia2", is_staff=True))

    assert client.post(reverse("sa-rotate", args=[account.pk])).status_code == 403


def test_the_new_token_is_shown_once_then_never_again(deployer, alice, carol):
    account, _cluster, sim = deployer
    generation = active(account)
    url = reverse("sa-reveal", args=[account.pk, generation.number])
    detail = alice.get(reverse("sa-detail", args=[account.pk])).content.decode()
    assert url in detail

    confirm = alice.get(url)
    assert confirm.status_code == 200
    assert "Show it now" in confirm.content.decode()
    assert carol.post(url).status_code == 404

    shown = alice.post(url)
    page = shown.content.decode()
    token = delivered_token(sim)
    assert token in page
    assert "no-store" in shown["Cache-Control"]

    again = alice.post(url)
    assert again.status_code == 410
    assert token not in again.content.decode()
    assert token not in alice.get(reverse("sa-detail", args=[account.pk])).content.decode()
    assert url not in alice.get(reverse("sa-detail", args=[account.pk])).content.decode()


def test_a_webhook_signing_key_is_never_shown_back(deployer, alice):
    account, _cluster, _sim = deployer
    key = "s3cr3t-" + "x" * 40

    alice.post(
        reverse("sa-target-add", args=[account.pk]),
        {"kind": "webhook", "url": "https://vault.example/hook", "signing_key": key},
    )

    assert account.targets.filter(kind="webhook").exists()
    assert key not in alice.get(reverse("sa-detail", args=[account.pk])).content.decode()
    assert key not in repr(list(AuditEvent.objects.values_list("after", flat=True)))


def legacy_token(sim, name="builder"):
    """A ServiceAccount with an old-style token Secret, as clusters before 1.24 made them."""
    core = k8s_client.CoreV1Api(official_client(sim))
    core.create_namespaced_service_account(
        "default",
        k8s_client.V1ServiceAccount(
            metadata=k8s_client.V1ObjectMeta(name=name, labels={"team": "platform"}),
            image_pull_secrets=[k8s_client.V1LocalObjectReference(name="registry")],
        ),
    )
    secret = core.create_namespaced_secret(
        "default",
        k8s_client.V1Secret(
            metadata=k8s_client.V1ObjectMeta(
                name=f"{name}-token",
                annotations={"kubernetes.io/service-account.name": name},
                labels={"owner": "platform"},
            ),
            type="kubernetes.io/service-account-token",
        ),
    )
    return base64.b64decode(secret.data["token"]).decode()


def test_legacy_tokens_are_reported_to_operators_only(make_cluster, people, olivia, alice):
    cluster, sim = make_cluster()
    legacy_token(sim)

    assert serviceaccounts.scan_legacy_tokens(cluster.pk) == 1

    page = olivia.get(reverse("sa-legacy")).content.decode()
    assert "default/builder-token" in page
    assert "owner=platform" in page
    assert alice.get(reverse("sa-legacy")).status_code == 403


def test_a_legacy_token_is_migrated_to_managed_rotation_then_deleted(
    make_cluster, people, olivia, rbac
):
    # given
    cluster, sim = make_cluster()
    legacy = legacy_token(sim)
    serviceaccounts.scan_legacy_tokens(cluster.pk)
    found = LegacyToken.objects.get()
    form = {
        "owner_team": people["payments"].pk,
        "rotation_period": "7d",
        "grace_period": "1d",
        "token_lifetime": "9d",
        "show_to_owner": "on",
        "reason": "rotate the builder's token",
    }

    # when: an operator takes it over
    response = olivia.post(reverse("sa-legacy-migrate", args=[found.pk]), form)

    # then: adopted, keeping what others put on it, and a managed token works
    account = ManagedServiceAccount.objects.get(name="builder")
    assert response.status_code == 302, response.content.decode()[:2000]
    assert account.adopted
    sa = rbac.core(sim).read_namespaced_service_account("builder", "default")
    assert sa.metadata.labels == {"team": "platform", "app.kubernetes.io/managed-by": "warden"}
    run = serviceaccounts.rotate_account(account.pk)
    assert run.status == "succeeded", run.error
    # its first Warden token says where the account came from, in words
    assert run.trigger == RotationTrigger.ADOPTED == active(account).trigger
    assert run.get_trigger_display() == "First token of an account taken over from a legacy token"
    sa = rbac.core(sim).read_namespaced_service_account("builder", "default")
    assert [s.name for s in sa.image_pull_secrets] == ["registry"]
    assert sa.metadata.labels["team"] == "platform"
    kubeconfig = serviceaccounts.reveal(active(account).pk, actor=None)
    assert "token:" in kubeconfig
    assert authenticated_as(sim, legacy) == "system:serviceaccount:default:builder"

    # when: the consumers have moved, the operator deletes the legacy Secret (with a reason)
    refused = olivia.post(reverse("sa-legacy-delete", args=[found.pk]), {"reason": ""})
    assert authenticated_as(sim, legacy) is not None
    olivia.post(reverse("sa-legacy-delete", args=[found.pk]), {"reason": "consumers moved"})

    # then
    assert refused.status_code == 302
    assert authenticated_as(sim, legacy) is None
    found.refresh_from_db()
    assert found.state == LegacyTokenState.DELETED
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert "legacytoken.migrated" in actions and "legacytoken.deleted" in actions
    assert legacy not in repr(list(AuditEvent.objects.values_list("before", "after", "reason")))
    assert account.generations.filter(state=GenerationState.ACTIVE).count() == 1


def test_a_scan_of_an_unreachable_cluster_keeps_the_last_report(make_cluster, people):
    from clusters.tasks import scan_fleet_legacy_tokens_task, scan_legacy_tokens_task

    cluster, sim = make_cluster()
    legacy_token(sim)
    assert scan_fleet_legacy_tokens_task() == 1  # eager: one scan per live cluster, done here
    sim.faults.unreachable = True
    try:
        assert scan_legacy_tokens_task(cluster.pk) == -1
    finally:
        sim.faults.unreachable = False
    assert LegacyToken.objects.get().state == LegacyTokenState.FOUND


def test_the_owner_changes_the_rotation_period_and_retires_with_a_reason(
    deployer, alice, people, django_capture_on_commit_callbacks
):
    account, cluster, sim = deployer
    form = {
        "owner_team": people["payments"].pk,
        "clusters": cluster.name,
        "rotation_period": "12h",
        "grace_period": "1h",
        "token_lifetime": "1d",
        "show_to_owner": "on",
    }
    edited = alice.post(reverse("sa-edit", args=[account.pk]), form)
    account.refresh_from_db()
    assert edited.status_code == 302
    assert account.rotation_period.total_seconds() == 12 * 3600
    assert (account.name, account.namespace) == ("deployer", "default")  # cannot change

    refused = alice.post(reverse("sa-retire", args=[account.pk]), {"reason": ""})
    account.refresh_from_db()
    assert refused.status_code == 302 and account.state == "active"
    token = delivered_token(sim)
    with django_capture_on_commit_callbacks(execute=True):
        alice.post(reverse("sa-retire", args=[account.pk]), {"reason": "service shut down"})
    account.refresh_from_db()
    assert account.state == "retired"
    assert authenticated_as(sim, token) is None


def test_the_last_place_tokens_go_cannot_be_removed(make_cluster, people, alice):
    cluster, _sim = make_cluster()
    account = declare(cluster, people["payments"], consumer=(cluster, "default", "deployer-token"))
    target = account.targets.get()

    page = alice.post(
        reverse("sa-target-remove", args=[account.pk, target.pk]), follow=True
    ).content.decode()

    assert "only place its tokens go" in page
    assert account.targets.count() == 1


def test_a_rotation_period_too_long_to_keep_is_a_form_error_not_a_500(
    make_cluster, people, catalogue, alice
):
    cluster, _sim = make_cluster()
    form = {
        "name": "ci-deployer",
        "namespace": "default",
        "owner_team": people["payments"].pk,
        "roles": [catalogue["viewer"].pk],
        "clusters": f"{cluster.name}, no-such-cluster",
        "rotation_period": "99999999999d",
        "grace_period": "1d",
        "token_lifetime": "9d",
    }

    response = alice.post(reverse("sa-create"), form)

    page = response.content.decode()
    assert response.status_code == 200
    assert "at most 3660d (ten years)" in page
    assert not ManagedServiceAccount.objects.exists()
    form["rotation_period"] = "7d"
    page = alice.post(reverse("sa-create"), form).content.decode()
    assert "No cluster is called no-such-cluster" in page
    assert not ManagedServiceAccount.objects.exists()


def test_the_account_form_names_roles_as_people_read_them(catalogue, alice):
    page = alice.get(reverse("sa-create")).content.decode()

    assert " Viewer</label>" in page and " viewer</label>" not in page
