"""Explaining a refusal: which roles of the catalogue would allow it, and what else may be wrong.

Pure tests of access.forbidden.explain, with the built-in roles' rules as Kubernetes aggregates
them (taken from kubesim's bootstrap policy).
"""

from __future__ import annotations

import pytest

from access.forbidden import (
    ALLOWS,
    DENIES,
    UNAVAILABLE,
    UNKNOWN,
    AccessAttempt,
    CatalogueRole,
    Holding,
    explain,
    parse_message,
    request_query,
)
from access.specs import ClusterSpec, GrantSpec, RoleDefinitionSpec, RoleSpec
from kubesim.rbac import ADMIN_RULES, EDIT_RULES, VIEW_RULES

BUILT_IN = {
    "view": VIEW_RULES,
    "edit": VIEW_RULES + EDIT_RULES,
    "admin": VIEW_RULES + EDIT_RULES + ADMIN_RULES,
    "cluster-admin": [
        {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
        {"nonResourceURLs": ["*"], "verbs": ["*"]},
    ],
}


def role(name, rank, *definitions):
    return CatalogueRole(name, name.title(), rank, RoleSpec(name, tuple(definitions)))


# Warden's default catalogue (access/migrations/0003_default_roles.py), plus a Warden-managed role.
CATALOGUE = [
    role("viewer", 10, RoleDefinitionSpec(cluster_role="view")),
    role(
        "developer",
        20,
        RoleDefinitionSpec(cluster_role="edit"),
        RoleDefinitionSpec(environment="prod", cluster_role="view"),
    ),
    role("operator", 30, RoleDefinitionSpec(cluster_role="admin")),
    role(
        "admin",
        40,
        RoleDefinitionSpec(cluster_role="cluster-admin", cluster_wide=True),
        RoleDefinitionSpec(environment="prod", allowed=False),
    ),
]
LOG_READER = role(
    "log-reader",
    5,
    RoleDefinitionSpec(
        rules=({"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},),
        namespaces=("team-*",),
    ),
)
DEV = ClusterSpec(name="dev-1", environment="dev", tier="tier-2")
PROD = ClusterSpec(name="prod-1", environment="prod", tier="tier-0")
OIDC = ClusterSpec(name="dev-2", environment="dev", tier="tier-2", user_prefix="oidc:")


def why(text, cluster=DEV, roles=CATALOGUE, **kw):
    return explain(parse_message(text), cluster, roles, BUILT_IN, **kw)


def states(explanation):
    return {v.role: v.state for v in explanation.verdicts}


def test_listing_pods_in_a_namespace_needs_only_viewer():
    answer = why(
        'pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the '
        'namespace "payments"'
    )
    assert answer.smallest.role == "viewer"
    assert answer.smallest.namespace == "payments"
    assert "list" in answer.smallest.rule_text and "pods" in answer.smallest.rule_text
    assert request_query(answer) == {"role": "viewer", "cluster": "dev-1", "namespace": "payments"}


def test_reading_secrets_needs_developer_because_view_leaves_them_out():
    answer = why(
        'secrets "db" is forbidden: User "alice" cannot get resource "secrets" in API group "" '
        'in the namespace "payments"'
    )
    assert states(answer)["viewer"] == DENIES
    assert answer.smallest.role == "developer"


def test_exec_into_a_pod_needs_developer():
    answer = why(
        'pods "web-0" is forbidden: User "alice" cannot create resource "pods/exec" in API group '
        '"" in the namespace "payments"'
    )
    assert answer.smallest.role == "developer"


def test_writing_rolebindings_needs_operator():
    answer = why(
        'rolebindings.rbac.authorization.k8s.io is forbidden: User "alice" cannot create '
        'resource "rolebindings" in API group "rbac.authorization.k8s.io" in the namespace "p"'
    )
    assert answer.smallest.role == "operator"


def test_a_cluster_scoped_resource_needs_a_cluster_wide_role():
    answer = why(
        'nodes is forbidden: User "alice" cannot list resource "nodes" in API group "" at the '
        "cluster scope"
    )
    assert answer.smallest.role == "admin"
    assert answer.smallest.namespace == ""
    assert request_query(answer) == {"role": "admin", "cluster": "dev-1"}


def test_all_namespaces_at_once_is_refused_to_a_namespaced_role_and_says_why():
    answer = why(
        'pods is forbidden: User "alice" cannot list resource "pods" in API group "" at the '
        "cluster scope"
    )
    viewer = next(v for v in answer.verdicts if v.role == "viewer")
    assert viewer.state == DENIES
    assert "cluster-wide binding" in viewer.why
    assert answer.smallest.role == "admin"


def test_in_production_the_developer_role_is_view_and_admin_is_not_offered():
    answer = why(
        'deployments.apps "api" is forbidden: User "alice" cannot patch resource "deployments" '
        'in API group "apps" in the namespace "checkout"',
        cluster=PROD,
    )
    assert states(answer) == {
        "viewer": DENIES,
        "developer": DENIES,
        "operator": ALLOWS,
        "admin": UNAVAILABLE,
    }
    assert answer.smallest.role == "operator"


def test_nothing_allows_a_path_in_production():
    answer = why('forbidden: User "alice" cannot get path "/metrics"', cluster=PROD)
    assert answer.smallest is None
    assert request_query(answer) is None


def test_warden_managed_rules_and_namespace_patterns_are_honoured():
    roles = [LOG_READER, *CATALOGUE]
    inside = why(
        'pods "w" is forbidden: User "alice" cannot get resource "pods/log" in API group "" in '
        'the namespace "team-a"',
        roles=roles,
    )
    outside = why(
        'pods "w" is forbidden: User "alice" cannot get resource "pods/log" in API group "" in '
        'the namespace "payments"',
        roles=roles,
    )
    assert inside.smallest.role == "log-reader"
    assert "warden-log-reader" in inside.smallest.kube_role
    assert outside.smallest.role == "viewer"
    log_reader = next(v for v in outside.verdicts if v.role == "log-reader")
    assert "team-*" in log_reader.why


def test_a_rule_limited_to_named_objects_says_which():
    roles = [
        role(
            "cm-reader",
            1,
            RoleDefinitionSpec(
                rules=(
                    {
                        "apiGroups": [""],
                        "resources": ["configmaps"],
                        "verbs": ["get"],
                        "resourceNames": ["app-config"],
                    },
                )
            ),
        )
    ]
    answer = why(
        'configmaps "other" is forbidden: User "alice" cannot get resource "configmaps" in API '
        'group "" in the namespace "p"',
        roles=roles,
    )
    assert "only for the objects named app-config" in answer.verdicts[0].why


def test_a_role_whose_rules_could_not_be_read_is_not_offered_and_says_so():
    answer = explain(
        parse_message(
            'pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the '
            'namespace "p"'
        ),
        DEV,
        CATALOGUE,
        {name: rules for name, rules in BUILT_IN.items() if name != "view"},
        {"view": "dev-1 is unreachable"},
    )
    assert states(answer)["viewer"] == UNKNOWN
    assert answer.smallest.role == "developer"
    assert any("could not read" in note for note in answer.notes)


def test_a_cluster_role_the_cluster_lacks_allows_nothing_and_says_so():
    roles = [role("reader", 1, RoleDefinitionSpec(cluster_role="monitoring-reader")), *CATALOGUE]

    answer = why(
        'pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the '
        'namespace "p"',
        roles=roles,
    )

    reader = answer.verdicts[0]
    assert reader.state == DENIES
    assert "monitoring-reader does not exist on dev-1" in reader.why
    assert answer.smallest.role == "viewer"


# --- the asker already holds a role that should allow it --------------------------------------

LIST_PODS = (
    'pods is forbidden: User "{user}" cannot list resource "pods" in API group "" in the '
    'namespace "payments"'
)


def holding(role_name="developer", via="team payments", in_force=True, **scope):
    return Holding(
        grant=GrantSpec(id=7, role=role_name, team="payments", **scope),
        via=via,
        in_force=in_force,
        pending=() if in_force else ("namespace 'payments' does not exist yet",),
    )


def test_a_grant_not_yet_reconciled_is_the_likely_cause():
    answer = why(
        LIST_PODS.format(user="alice"),
        username="alice",
        holdings=[holding(in_force=False, namespaces=("payments",))],
    )
    assert answer.already_allowed
    assert "not in force on dev-1 yet" in answer.causes[0]
    assert "does not exist yet" in answer.causes[0]


def test_a_grant_in_force_points_at_groups_and_the_wrong_cluster():
    answer = why(
        LIST_PODS.format(user="alice"),
        username="alice",
        holdings=[holding(namespaces=("pay*",))],
    )
    text = " ".join(answer.causes)
    assert "already put developer (via team payments) in force" in text
    assert 'group "payments"' in text
    assert "another cluster" in text


def test_a_message_without_the_clusters_user_prefix_points_at_the_prefix():
    answer = why(
        LIST_PODS.format(user="alice"),
        cluster=OIDC,
        username="alice",
        holdings=[holding(namespaces=("payments",))],
    )
    assert any('Warden binds "oidc:alice"' in cause for cause in answer.causes)


def test_a_prefix_mismatch_is_said_even_without_a_grant():
    answer = why(LIST_PODS.format(user="sso:alice"), cluster=OIDC, username="alice")
    assert answer.causes == []
    assert any('Warden binds "oidc:alice"' in note for note in answer.notes)


def test_a_grant_for_other_namespaces_or_clusters_does_not_count():
    elsewhere = [
        holding(namespaces=("checkout",)),
        holding(clusters=("prod-1",)),
        holding(role_name="viewer", environments=("staging",)),
    ]
    answer = why(LIST_PODS.format(user="alice"), username="alice", holdings=elsewhere)
    assert not answer.already_allowed
    assert answer.causes == []
    assert answer.smallest.role == "viewer"


def test_a_namespaced_grant_does_not_cover_the_cluster_scope():
    answer = why(
        'pods is forbidden: User "alice" cannot list resource "pods" in API group "" at the '
        "cluster scope",
        username="alice",
        holdings=[holding(role_name="developer", namespaces=("payments",))],
    )
    assert not answer.already_allowed


def test_a_cluster_wide_grant_covers_every_namespace():
    answer = why(
        LIST_PODS.format(user="alice"), username="alice", holdings=[holding(role_name="admin")]
    )
    assert answer.already_allowed


@pytest.mark.parametrize(
    ("user", "says"),
    [
        ("system:serviceaccount:payments:deployer", 'service account "deployer" in namespace'),
        ("system:anonymous", "without any identity"),
        ("bob", 'about user "bob"'),
    ],
)
def test_it_says_when_the_message_is_not_about_the_asker(user, says):
    answer = why(
        LIST_PODS.format(user=user), username="alice", holdings=[holding(namespaces=("payments",))]
    )
    assert any(says in note for note in answer.notes)
    assert not answer.already_allowed  # alice's grants say nothing about someone else
    assert answer.smallest.role == "viewer"


def test_typed_requests_without_a_user_are_about_the_asker():
    attempt = AccessAttempt(verb="list", resource="pods", namespace="payments")
    answer = explain(
        attempt,
        DEV,
        CATALOGUE,
        BUILT_IN,
        username="alice",
        holdings=[holding(namespaces=("payments",))],
    )
    assert answer.already_allowed
    assert answer.notes == []
