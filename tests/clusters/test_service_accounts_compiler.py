"""Service accounts in the pure compiler and the diff: no I/O."""

from __future__ import annotations

from datetime import UTC, datetime

from access.specs import ClusterSpec, DirectorySnapshot, RoleDefinitionSpec, RoleSpec
from clusters.compiler import ServiceAccountSpec, compile_cluster
from clusters.plan import diff

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
DEV = ClusterSpec("dev-1", "dev", "tier-3", labels=(("ci", "yes"),))
PROD = ClusterSpec("prod-1", "prod", "tier-0")
ROLES = {
    "viewer": RoleSpec("viewer", (RoleDefinitionSpec(cluster_role="view", cluster_wide=True),)),
    "developer": RoleSpec(
        "developer",
        (
            RoleDefinitionSpec(cluster_role="edit"),
            RoleDefinitionSpec(environment="prod", allowed=False),
        ),
    ),
    "log-reader": RoleSpec(
        "log-reader",
        (
            RoleDefinitionSpec(
                rules=({"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},)
            ),
        ),
    ),
}


def compile_(cluster, accounts, namespaces=("default", "ci", "team-a")):
    return compile_cluster(cluster, [], ROLES, DirectorySnapshot(), list(namespaces), NOW, accounts)


def account(**fields):
    base = {"id": 7, "name": "deployer", "namespace": "ci", "clusters": ("dev-1",)}
    return ServiceAccountSpec(**{**base, **fields})


def test_an_account_becomes_a_service_account_and_a_binding_in_its_own_namespace():
    state = compile_(DEV, [account(roles=("developer",), owner_team="payments")])

    sa = state.objects[("ServiceAccount", "ci", "deployer")]
    assert sa["metadata"]["annotations"] == {
        "warden.io/service-account": "7",
        "warden.io/owner-team": "payments",
    }
    binding = state.objects[("RoleBinding", "ci", "warden-sa:ci:deployer:developer")]
    assert binding["roleRef"]["name"] == "edit"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "deployer", "namespace": "ci"}
    ]
    assert state.accounts == {7: ("ServiceAccount", "ci", "deployer")}


def test_a_cluster_wide_role_binds_cluster_wide_and_named_namespaces_bind_there():
    state = compile_(
        DEV,
        [
            account(roles=("viewer",)),
            account(id=8, name="logs", roles=("log-reader",), namespaces=("team-*",)),
        ],
    )

    assert ("ClusterRoleBinding", "", "warden-sa:ci:deployer:viewer") in state.objects
    assert ("RoleBinding", "team-a", "warden-sa:ci:logs:log-reader") in state.objects
    # Warden's own ClusterRole for a rules-based role, as for people
    assert ("ClusterRole", "", "warden-log-reader") in state.objects


def test_an_account_reaches_only_the_clusters_it_names_or_selects():
    assert compile_(PROD, [account()]).objects == {}
    by_label = account(clusters=(), selector=(("ci", "yes"),))
    assert ("ServiceAccount", "ci", "deployer") in compile_(DEV, [by_label]).objects
    assert compile_(PROD, [by_label]).objects == {}
    nowhere = account(clusters=(), selector=())
    assert compile_(DEV, [nowhere]).objects == {}


def test_what_cannot_apply_is_pending_and_says_why():
    state = compile_(PROD, [account(clusters=("prod-1",), roles=("developer",))])
    assert state.account_pending == {7: ["role 'developer' is not available in prod/tier-0"]}
    assert ("ServiceAccount", "ci", "deployer") in state.objects

    missing = compile_(DEV, [account()], namespaces=("default",))
    assert missing.account_pending == {7: ["namespace 'ci' does not exist yet"]}
    assert missing.objects == {}


def test_only_wardens_own_marks_on_a_service_account_are_compared():
    desired = compile_(DEV, [account()]).objects
    sa = desired[("ServiceAccount", "ci", "deployer")]
    on_cluster = {
        **sa,
        "metadata": {
            **sa["metadata"],
            "labels": {**sa["metadata"]["labels"], "team": "platform"},
            "annotations": {**sa["metadata"]["annotations"], "note": "adopted"},
            "resourceVersion": "9",
        },
        "imagePullSecrets": [{"name": "registry"}],
        "automountServiceAccountToken": True,
    }
    assert diff(desired, {("ServiceAccount", "ci", "deployer"): on_cluster}).empty

    tampered = {**on_cluster, "metadata": {**on_cluster["metadata"], "annotations": {}}}
    assert len(diff(desired, {("ServiceAccount", "ci", "deployer"): tampered}).update) == 1
