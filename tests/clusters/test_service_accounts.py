"""Managed service accounts against kubesim: declared, reconciled, issued, delivered, rotated,
kept through the grace period and revoked; checked as a consumer and as the API server sees it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from clusters import serviceaccounts, services
from clusters.choices import GenerationState, RotationStatus, RotationTrigger
from clusters.compiler import MANAGED_BY_LABEL
from clusters.models import TokenGeneration
from tests.clusters.sa_helpers import (
    active,
    authenticated_as,
    consumer_secret,
    create_namespace,
    declare,
    delivered_token,
    status_when_used,
)

pytestmark = pytest.mark.django_db
SUBJECT = "system:serviceaccount:default:deployer"


def end_grace(account):
    """As if the grace period had passed."""
    TokenGeneration.objects.filter(account=account, state=GenerationState.GRACE).update(
        grace_until=timezone.now() - timedelta(seconds=1)
    )


def test_declaring_an_account_puts_it_and_its_bindings_on_the_cluster(
    make_cluster, catalogue, people, rbac
):
    # given
    cluster, sim = make_cluster()
    account = declare(cluster, people["payments"], roles=[catalogue["developer"]])
    # when
    run = services.reconcile_cluster(cluster.pk)
    # then
    assert run.status == "succeeded", run.error
    sa = rbac.core(sim).read_namespaced_service_account("deployer", "default")
    assert sa.metadata.labels[MANAGED_BY_LABEL] == "warden"
    assert sa.metadata.annotations["warden.io/owner-team"] == "payments"
    assert sa.automount_service_account_token is False
    binding = rbac.bindings(sim, "default")["warden-sa:default:deployer:developer"]
    assert binding.role_ref.name == "edit"
    assert [(s.kind, s.name, s.namespace) for s in binding.subjects] == [
        ("ServiceAccount", "deployer", "default")
    ]
    assert binding.metadata.labels[MANAGED_BY_LABEL] == "warden"
    assert account.next_rotation_at is not None  # the first token is due at once


def test_the_first_rotation_issues_and_delivers_a_working_token(make_cluster, catalogue, people):
    cluster, sim = make_cluster()
    account = declare(
        cluster,
        people["payments"],
        roles=[catalogue["developer"]],
        consumer=(cluster, "default", "deployer-token"),
    )

    run = serviceaccounts.rotate_account(account.pk)

    assert run.status == RotationStatus.SUCCEEDED, run.error
    assert run.trigger == RotationTrigger.DECLARED
    token = delivered_token(sim)
    assert authenticated_as(sim, token) == SUBJECT
    assert status_when_used(sim, token) == 200  # developer -> edit in default
    assert status_when_used(sim, token, namespace="kube-system") == 403
    secret = consumer_secret(sim)
    assert secret.metadata.labels["warden.io/token-generation"] == "1"
    assert "kubeconfig" in secret.data
    generation = active(account)
    assert generation.number == 1
    assert generation.sealed_tokens == ""  # delivered, not to be shown: Warden keeps no copy


def test_the_token_is_bound_to_a_secret_whose_deletion_revokes_it(
    make_cluster, catalogue, people, rbac
):
    cluster, sim = make_cluster()
    account = declare(cluster, people["payments"], consumer=(cluster, "default", "deployer-token"))
    serviceaccounts.rotate_account(account.pk)
    token = delivered_token(sim)
    bound = rbac.core(sim).read_namespaced_secret("deployer-warden-1", "default")
    assert bound.metadata.labels[MANAGED_BY_LABEL] == "warden"
    assert active(account).issued[cluster.name]["uid"] == bound.metadata.uid

    rbac.core(sim).delete_namespaced_secret("deployer-warden-1", "default")

    assert authenticated_as(sim, token) is None


def test_rotation_keeps_the_old_token_through_the_grace_period_then_revokes_it(
    make_cluster, catalogue, people
):
    # given: generation 1 in use
    cluster, sim = make_cluster()
    account = declare(cluster, people["payments"], consumer=(cluster, "default", "deployer-token"))
    serviceaccounts.rotate_account(account.pk)
    old = delivered_token(sim)

    # when: rotated on demand
    run = serviceaccounts.rotate_account(account.pk, force=True)

    # then: the consumer has generation 2, and generation 1 still works during the grace
    assert run.status == RotationStatus.SUCCEEDED, run.error
    new = delivered_token(sim)
    assert new != old
    assert consumer_secret(sim).metadata.labels["warden.io/token-generation"] == "2"
    assert authenticated_as(sim, old) == SUBJECT
    assert authenticated_as(sim, new) == SUBJECT
    first = account.generations.get(number=1)
    assert first.state == GenerationState.GRACE

    # when: the grace period is over
    end_grace(account)
    run = serviceaccounts.rotate_account(account.pk)

    # then: the old token is refused, the new one works
    assert run.status == RotationStatus.SUCCEEDED, run.error
    assert authenticated_as(sim, old) is None
    assert status_when_used(sim, old) == 401
    assert authenticated_as(sim, new) == SUBJECT
    first.refresh_from_db()
    assert first.state == GenerationState.REVOKED
    assert first.revoked_on == [cluster.name]


def test_with_no_grace_period_the_old_token_is_revoked_in_the_same_rotation(
    make_cluster, catalogue, people
):
    cluster, sim = make_cluster()
    account = declare(
        cluster,
        people["payments"],
        consumer=(cluster, "default", "deployer-token"),
        grace=timedelta(0),
    )
    serviceaccounts.rotate_account(account.pk)
    old = delivered_token(sim)

    run = serviceaccounts.rotate_account(account.pk, force=True)

    assert authenticated_as(sim, old) is None
    assert authenticated_as(sim, delivered_token(sim)) == SUBJECT
    # read the ServiceAccount (is it still Warden's?), create the bound Secret, TokenRequest,
    # write the consumer's Secret, delete the old one
    assert run.api_calls == 5


def test_nothing_due_means_nothing_done(make_cluster, people):
    cluster, _sim = make_cluster()
    account = declare(cluster, people["payments"], consumer=(cluster, "default", "deployer-token"))
    serviceaccounts.rotate_account(account.pk)

    assert serviceaccounts.rotate_account(account.pk) is None
    assert account.generations.count() == 1


def test_a_scheduled_rotation_happens_when_the_period_has_passed(make_cluster, people):
    cluster, _sim = make_cluster()
    account = declare(cluster, people["payments"], consumer=(cluster, "default", "deployer-token"))
    serviceaccounts.rotate_account(account.pk)
    account.refresh_from_db()
    assert account.next_rotation_at > timezone.now() + timedelta(hours=23)
    assert serviceaccounts.due_account_ids() == []

    type(account).objects.filter(pk=account.pk).update(next_rotation_at=timezone.now())
    assert serviceaccounts.due_account_ids() == [account.pk]
    run = serviceaccounts.rotate_account(account.pk)

    assert run.trigger == RotationTrigger.SCHEDULE
    assert active(account).number == 2


def test_a_reconcile_of_a_cluster_without_service_accounts_lists_none(make_cluster, people):
    # given: one cluster with an account, one without
    with_account, with_sim = make_cluster()
    without, without_sim = make_cluster()
    declare(with_account, people["payments"])
    services.reconcile_cluster(with_account.pk)
    services.reconcile_cluster(without.pk)
    with_sim.reset_counters()
    without_sim.reset_counters()

    # when: nothing changed
    quiet = services.reconcile_cluster(without.pk)
    busy = services.reconcile_cluster(with_account.pk)

    # then: the cluster that never had one costs what it did before service accounts existed
    assert quiet.api_calls == 3
    assert without_sim.counters[("list", "serviceaccounts")] == 0
    assert busy.api_calls == 5  # + namespaces (its namespace must exist) + ServiceAccounts
    assert (busy.created, busy.updated, busy.deleted) == (0, 0, 0)


def test_retiring_the_last_account_removes_it_then_stops_listing(make_cluster, people, rbac):
    cluster, sim = make_cluster()
    account = declare(cluster, people["payments"], consumer=(cluster, "default", "deployer-token"))
    serviceaccounts.rotate_account(account.pk)
    token = delivered_token(sim)

    serviceaccounts.retire_service_account(account, reason="decommissioned")
    revoke = serviceaccounts.rotate_account(account.pk)
    removal = services.reconcile_cluster(cluster.pk)
    sim.reset_counters()
    after = services.reconcile_cluster(cluster.pk)
    listed_accounts = sim.counters[("list", "serviceaccounts")]

    assert revoke.trigger == RotationTrigger.RETIRE
    assert authenticated_as(sim, token) is None
    assert "deployer-token" not in [
        s.metadata.name for s in rbac.core(sim).list_namespaced_secret("default").items
    ]
    assert removal.deleted == 1
    names = [
        sa.metadata.name for sa in rbac.core(sim).list_namespaced_service_account("default").items
    ]
    assert "deployer" not in names
    assert after.api_calls == 3
    assert listed_accounts == 0


def test_drift_on_the_service_account_is_repaired_and_its_tokens_rotated(
    make_cluster, catalogue, people, rbac
):
    # given: someone deletes the ServiceAccount, killing its tokens
    cluster, sim = make_cluster()
    account = declare(
        cluster,
        people["payments"],
        roles=[catalogue["developer"]],
        consumer=(cluster, "default", "deployer-token"),
    )
    serviceaccounts.rotate_account(account.pk)
    old = delivered_token(sim)
    rbac.core(sim).delete_namespaced_service_account("deployer", "default")
    rbac.api(sim).delete_namespaced_role_binding("warden-sa:default:deployer:developer", "default")
    assert authenticated_as(sim, old) is None

    # when
    run = services.reconcile_cluster(cluster.pk)

    # then: put back, and a rotation was asked for; it gives the consumer a working token
    assert run.created == 2 and run.drift == 2
    account.refresh_from_db()
    assert account.rotation_requested_at is not None
    rotation = serviceaccounts.rotate_account(account.pk)
    assert rotation.trigger == RotationTrigger.RECREATED
    assert authenticated_as(sim, delivered_token(sim)) == SUBJECT


def test_an_existing_service_account_warden_does_not_own_is_left_alone(make_cluster, people, rbac):
    from kubernetes import client as k8s_client

    cluster, sim = make_cluster()
    rbac.core(sim).create_namespaced_service_account(
        "default",
        k8s_client.V1ServiceAccount(
            metadata=k8s_client.V1ObjectMeta(name="deployer", labels={"team": "ops"})
        ),
    )
    declare(cluster, people["payments"])

    run = services.reconcile_cluster(cluster.pk)

    # a name conflict for a person to resolve, reported as such (not a failed run)
    assert run.conflicts == ["ServiceAccount default/deployer"]
    sa = rbac.core(sim).read_namespaced_service_account("deployer", "default")
    assert sa.metadata.labels == {"team": "ops"}


def test_an_account_whose_namespace_does_not_exist_yet_is_pending(make_cluster, people, rbac):
    cluster, sim = make_cluster()
    account = declare(cluster, people["payments"], namespace="ci")

    run = services.reconcile_cluster(cluster.pk)
    assert run.pending == {f"sa:{account.pk}": ["namespace 'ci' does not exist yet"]}

    create_namespace(sim, "ci")
    run = services.reconcile_cluster(cluster.pk)
    assert run.pending == {}
    assert rbac.core(sim).read_namespaced_service_account("deployer", "ci")


def test_tokens_for_an_account_on_two_clusters_come_as_one_kubeconfig(make_cluster, people):
    import base64

    import yaml

    dev, dev_sim = make_cluster()
    prod, prod_sim = make_cluster(environment="prod")
    dev.labels = prod.labels = {"ci": "yes"}
    dev.save()
    prod.save()
    account = declare(
        dev,
        people["payments"],
        consumer=(dev, "default", "deployer-token"),
        clusters=[],
        cluster_selector={"ci": "yes"},
    )

    run = serviceaccounts.rotate_account(account.pk)

    assert run.status == RotationStatus.SUCCEEDED, run.error
    secret = consumer_secret(dev_sim)
    assert "token" not in secret.data  # one per cluster instead
    kubeconfig = yaml.safe_load(base64.b64decode(secret.data["kubeconfig"]))
    users = {u["name"]: u["user"]["token"] for u in kubeconfig["users"]}
    assert authenticated_as(dev_sim, users[f"deployer@{dev.name}"]) == SUBJECT
    assert authenticated_as(prod_sim, users[f"deployer@{prod.name}"]) == SUBJECT
    assert authenticated_as(prod_sim, users[f"deployer@{dev.name}"]) is None


def test_the_declaration_is_checked(make_cluster, people):
    from django.core.exceptions import ValidationError

    cluster, _sim = make_cluster()
    with pytest.raises(ValidationError, match="Name the clusters"):
        declare(cluster, people["payments"], clusters=[])
    with pytest.raises(ValidationError, match="lifetime must cover"):
        declare(cluster, people["payments"], token_lifetime=timedelta(hours=1))
    with pytest.raises(ValidationError):
        declare(cluster, people["payments"], name="Not_A_Name")
    declare(cluster, people["payments"])
    with pytest.raises(ValidationError, match="already exists"):
        declare(cluster, people["payments"])


def test_beat_fans_out_one_rotation_per_due_account(make_cluster, people, settings):
    from clusters.tasks import rotate_due_service_accounts_task

    assert "service-account-rotation" in settings.CELERY_BEAT_SCHEDULE
    cluster, _sim = make_cluster()
    first = declare(cluster, people["payments"], consumer=(cluster, "default", "deployer-token"))
    second = declare(
        cluster, people["payments"], name="builder", consumer=(cluster, "default", "builder-token")
    )

    assert rotate_due_service_accounts_task() == 2  # eager: each rotation runs here

    assert active(first).number == 1 and active(second).number == 1
    assert rotate_due_service_accounts_task() == 0


def test_every_step_of_a_rotation_is_audited(make_cluster, people):
    from access.models import AuditEvent

    cluster, _sim = make_cluster()
    account = declare(
        cluster,
        people["payments"],
        consumer=(cluster, "default", "deployer-token"),
        grace=timedelta(0),
    )
    serviceaccounts.rotate_account(account.pk)
    serviceaccounts.request_rotation(account, reason="routine")
    serviceaccounts.rotate_account(account.pk)

    events = AuditEvent.objects.filter(
        object_type="clusters.managedserviceaccount", object_id=str(account.pk)
    ).order_by("seq")
    assert [e.action for e in events] == [
        "serviceaccount.declared",
        "serviceaccount.target_added",
        "serviceaccount.rotated",
        "serviceaccount.rotation_requested",
        "serviceaccount.rotated",
        "serviceaccount.token_revoked",
    ]
    rotated = events.filter(action="serviceaccount.rotated").last()
    assert rotated.before == {"active_generations": [1]}
    assert rotated.after["generation"] == 2
    assert rotated.after["issued_on"] == [cluster.name]
    assert rotated.after["delivered_to"] == [f"Secret {cluster.name}/default/deployer-token"]
    assert events.last().after == {"generation": 1, "clusters": [cluster.name]}
