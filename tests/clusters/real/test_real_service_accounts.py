"""Managed service accounts on the real kube-apiserver: TokenRequest, bound tokens, TokenReview."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from django.utils import timezone
from kubernetes import client as k8s_client
from kubernetes import config

from clusters import serviceaccounts, services
from clusters.choices import GenerationState, LegacyTokenState, RotationStatus
from clusters.models import LegacyToken, TokenGeneration
from tests.clusters.real.conftest import legacy_token
from tests.clusters.sa_helpers import (
    active,
    authenticated_as,
    consumer_secret,
    declare,
    delivered_token,
    status_when_used,
)
from tests.contract.conftest import eventually

pytestmark = pytest.mark.django_db
SUBJECT = "system:serviceaccount:default:deployer"


def test_declare_rotate_and_revoke_with_the_real_token_review(
    real_cluster, register, catalogue, people, tmp_path
):
    # given: an account declared with the developer role, delivering to a consumer Secret
    cluster = register()
    account = declare(
        cluster,
        people["payments"],
        roles=[catalogue["developer"]],
        consumer=(cluster, "default", "deployer-token"),
    )

    # when: the first rotation issues generation 1
    run = serviceaccounts.rotate_account(account.pk)

    # then: the delivered token is the ServiceAccount's, and RBAC lets it do what the role says
    assert run.status == RotationStatus.SUCCEEDED, run.error
    old = delivered_token(real_cluster)
    assert authenticated_as(real_cluster, old) == SUBJECT
    assert status_when_used(real_cluster, old) == 200
    assert status_when_used(real_cluster, old, namespace="kube-system") == 403
    assert active(account).issued[cluster.name]["uid"]
    # the kubeconfig delivered beside the token works as is, as a consumer loads it
    kubeconfig = base64.b64decode(consumer_secret(real_cluster).data["kubeconfig"]).decode()
    (tmp_path / "kubeconfig").write_text(kubeconfig)
    consumer = config.new_client_from_config(config_file=str(tmp_path / "kubeconfig"))
    assert k8s_client.CoreV1Api(consumer).list_namespaced_pod("default").items == []

    # when: rotated on demand, then the grace period ends
    run = serviceaccounts.rotate_account(account.pk, force=True)
    assert run.status == RotationStatus.SUCCEEDED, run.error
    new = delivered_token(real_cluster)
    assert new != old
    assert consumer_secret(real_cluster).metadata.labels["warden.io/token-generation"] == "2"
    assert authenticated_as(real_cluster, old) == SUBJECT  # still in its grace period
    TokenGeneration.objects.filter(account=account, state=GenerationState.GRACE).update(
        grace_until=timezone.now() - timedelta(seconds=1)
    )
    run = serviceaccounts.rotate_account(account.pk)

    # then: the real TokenReview refuses the old token (once kube-apiserver's 10s cache of its
    # last success has run out) and accepts the new one
    assert run.status == RotationStatus.SUCCEEDED, run.error
    assert eventually(lambda: authenticated_as(real_cluster, old) is None)
    assert status_when_used(real_cluster, old) == 401
    assert authenticated_as(real_cluster, new) == SUBJECT
    assert status_when_used(real_cluster, new) == 200
    first = account.generations.get(number=1)
    assert first.state == GenerationState.REVOKED and first.revoked_on == [cluster.name]


def test_retiring_an_account_revokes_its_token_and_removes_it(real_cluster, register, people, rbac):
    cluster = register()
    account = declare(cluster, people["payments"], consumer=(cluster, "default", "deployer-token"))
    serviceaccounts.rotate_account(account.pk)
    token = delivered_token(real_cluster)

    serviceaccounts.retire_service_account(account, reason="the deployer is gone")
    revoke = serviceaccounts.rotate_account(account.pk)
    removal = services.reconcile_cluster(cluster.pk)

    assert revoke.status == RotationStatus.SUCCEEDED, revoke.error
    assert authenticated_as(real_cluster, token) is None
    assert status_when_used(real_cluster, token) == 401
    assert removal.deleted == 1, removal.error
    core = rbac.core(real_cluster)
    assert "deployer" not in [
        sa.metadata.name for sa in core.list_namespaced_service_account("default").items
    ]
    assert "deployer-token" not in [
        s.metadata.name for s in core.list_namespaced_secret("default").items
    ]


def test_the_legacy_token_scan_finds_long_lived_token_secrets(real_cluster, register, people):
    cluster = register()
    token = legacy_token(real_cluster, "builder")

    found = serviceaccounts.scan_legacy_tokens(cluster.pk)

    names = set(LegacyToken.objects.values_list("namespace", "name"))
    # the builder's, and the manager's own token Secret from deploy/rbac/warden-manager.yaml
    assert ("default", "builder-token") in names
    assert ("warden-system", "warden-manager-token") in names
    assert found == len(names) == 2
    assert LegacyToken.objects.get(name="builder-token").state == LegacyTokenState.FOUND
    assert authenticated_as(real_cluster, token) == "system:serviceaccount:default:builder"


def test_a_legacy_token_is_migrated_to_rotation_then_deleted(real_cluster, register, people, rbac):
    # given: a long-lived token in use, reported by the scan
    cluster = register()
    legacy = legacy_token(real_cluster, "builder")
    serviceaccounts.scan_legacy_tokens(cluster.pk)
    found = LegacyToken.objects.get(name="builder-token")

    # when: an operator takes its ServiceAccount over, and the first managed token is issued
    account = serviceaccounts.migrate_legacy_token(
        found,
        serviceaccounts.AccountInput(
            name="builder",
            namespace="default",
            owner_team=people["payments"],
            roles=[],
            clusters=[cluster.name],
            grace_period=timedelta(days=1),
            rotation_period=timedelta(days=7),
            token_lifetime=timedelta(days=9),
            show_to_owner=True,
        ),
        actor=None,
        reason="rotate the builder's token",
    )
    run = serviceaccounts.rotate_account(account.pk)

    # then: the real ServiceAccount is Warden's now, and both tokens authenticate as it
    assert run.status == RotationStatus.SUCCEEDED, run.error
    sa = rbac.core(real_cluster).read_namespaced_service_account("builder", "default")
    assert sa.metadata.labels["app.kubernetes.io/managed-by"] == "warden"
    assert "token:" in serviceaccounts.reveal(active(account).pk, actor=None)
    assert authenticated_as(real_cluster, legacy) == "system:serviceaccount:default:builder"

    # when: the consumers have moved and the operator deletes the legacy Secret
    serviceaccounts.delete_legacy_token(found, actor=None, reason="consumers moved")

    # then: the real server refuses the legacy token; the managed account lives on
    assert eventually(lambda: authenticated_as(real_cluster, legacy) is None)
    found.refresh_from_db()
    assert found.state == LegacyTokenState.DELETED
    assert account.generations.filter(state=GenerationState.ACTIVE).count() == 1
