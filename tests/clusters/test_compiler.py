"""The desired-state compiler and the diff: pure functions, so tested without I/O."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from access.specs import ClusterSpec, DirectorySnapshot, GrantSpec, RoleDefinitionSpec, RoleSpec
from clusters.compiler import GRANTS_ANNOTATION, MANAGED_BY_LABEL, compile_cluster
from clusters.plan import diff

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
PROD = ClusterSpec(
    "prod-eu-1",
    "prod",
    "tier-0",
    labels=(("region", "eu"),),
    user_prefix="oidc:",
    group_prefix="oidc:",
)
DEV = ClusterSpec("dev-1", "dev", "tier-3", labels=(("region", "us"),))
ROLES = {
    "viewer": RoleSpec("viewer", (RoleDefinitionSpec(cluster_role="view", cluster_wide=True),)),
    "developer": RoleSpec(
        "developer",
        (
            RoleDefinitionSpec(cluster_role="edit"),
            RoleDefinitionSpec(environment="prod", cluster_role="view"),
        ),
    ),
    "admin": RoleSpec(
        "admin",
        (
            RoleDefinitionSpec(cluster_role="cluster-admin", cluster_wide=True),
            RoleDefinitionSpec(environment="prod", allowed=False),
        ),
    ),
    "log-reader": RoleSpec(
        "log-reader",
        (
            RoleDefinitionSpec(
                rules=(
                    {
                        "apiGroups": [""],
                        "resources": ["pods", "pods/log"],
                        "verbs": ["get", "list"],
                    },
                ),
                namespaces=("team-*",),
            ),
        ),
    ),
}
DIRECTORY = DirectorySnapshot(
    team_members={"payments": frozenset({"alice", "bob", "leaver"}), "sre": frozenset({"carol"})},
    active_people=frozenset({"alice", "bob", "carol", "dave"}),
    active_teams=frozenset({"payments", "sre"}),
)
NAMESPACES = ["default", "payments", "team-a", "team-b"]


def compile_(cluster, grants, directory=DIRECTORY, namespaces=NAMESPACES, now=NOW):
    return compile_cluster(cluster, grants, ROLES, directory, namespaces, now)


def test_one_binding_per_role_and_namespace_holds_every_subject():
    grants = [
        GrantSpec(1, "developer", team="payments", namespaces=("payments",)),
        GrantSpec(2, "developer", person="dave", namespaces=("payments",)),
        GrantSpec(3, "developer", team="sre", namespaces=("payments", "team-a")),
    ]

    state = compile_(DEV, grants)

    binding = state.objects[("RoleBinding", "payments", "warden-developer")]
    assert binding["roleRef"]["name"] == "edit"
    assert [s["name"] for s in binding["subjects"]] == ["payments", "sre", "dave"]
    assert binding["metadata"]["labels"][MANAGED_BY_LABEL] == "warden"
    assert binding["metadata"]["annotations"][GRANTS_ANNOTATION] == "1,2,3"
    assert set(state.objects) == {
        ("RoleBinding", "payments", "warden-developer"),
        ("RoleBinding", "team-a", "warden-developer"),
    }


def test_prefixes_are_applied_and_the_most_specific_definition_wins():
    state = compile_(PROD, [GrantSpec(1, "developer", team="payments", namespaces=("payments",))])

    binding = state.objects[("RoleBinding", "payments", "warden-developer")]
    assert binding["roleRef"]["name"] == "view"  # developer is read-only in prod
    assert binding["subjects"] == [
        {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "oidc:payments"}
    ]


def test_expand_mode_binds_active_members_and_never_inactive_people():
    cluster = ClusterSpec("dev-2", "dev", "tier-3", bind_groups=False, user_prefix="u:")

    state = compile_(cluster, [GrantSpec(1, "viewer", team="payments")])

    binding = state.objects[("ClusterRoleBinding", "", "warden-viewer")]
    assert [s["name"] for s in binding["subjects"]] == ["u:alice", "u:bob"]
    assert {s["kind"] for s in binding["subjects"]} == {"User"}


def test_an_inactive_person_or_team_gets_nothing():
    grants = [GrantSpec(1, "viewer", person="leaver"), GrantSpec(2, "viewer", team="gone")]
    assert compile_(DEV, grants).objects == {}


def test_a_role_forbidden_in_an_environment_is_pending_not_bound():
    state = compile_(PROD, [GrantSpec(7, "admin", team="sre")])

    assert state.objects == {}
    assert "not available in prod/tier-0" in state.pending[7][0]


def test_scope_by_environment_tier_cluster_and_labels():
    grants = [
        GrantSpec(1, "viewer", person="alice", environments=("prod",)),
        GrantSpec(2, "viewer", person="bob", tiers=("tier-3",)),
        GrantSpec(3, "viewer", person="carol", selector=(("region", "eu"),)),
        GrantSpec(4, "viewer", person="dave", clusters=("dev-1",)),
    ]
    prod_subjects = compile_(PROD, grants).objects[("ClusterRoleBinding", "", "warden-viewer")]
    dev_subjects = compile_(DEV, grants).objects[("ClusterRoleBinding", "", "warden-viewer")]
    assert [s["name"] for s in prod_subjects["subjects"]] == ["oidc:alice", "oidc:carol"]
    assert [s["name"] for s in dev_subjects["subjects"]] == ["bob", "dave"]


def test_missing_namespaces_are_pending_and_patterns_expand():
    grants = [GrantSpec(1, "developer", person="alice", namespaces=("checkout", "team-*"))]

    state = compile_(DEV, grants)

    assert {key[1] for key in state.objects} == {"team-a", "team-b"}
    assert state.pending[1] == ["namespace 'checkout' does not exist yet"]


def test_a_namespace_being_deleted_takes_no_binding_and_says_so():
    grants = [
        GrantSpec(1, "developer", person="alice", namespaces=("team-a",)),
        GrantSpec(2, "developer", person="bob", namespaces=("team-*",)),
    ]

    state = compile_cluster(DEV, grants, ROLES, DIRECTORY, NAMESPACES, NOW, leaving=["team-a"])

    assert {key[1] for key in state.objects} == {"team-b"}
    assert state.pending[1] == ["namespace 'team-a' is being deleted"]
    assert 2 not in state.pending  # a pattern simply matches the namespaces that stay


def test_warden_managed_rules_get_their_own_cluster_role_limited_to_role_namespaces():
    grants = [GrantSpec(1, "log-reader", person="alice", namespaces=("payments", "team-a"))]

    state = compile_(DEV, grants)

    role = state.objects[("ClusterRole", "", "warden-log-reader")]
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]}
    ]
    assert ("RoleBinding", "team-a", "warden-log-reader") in state.objects
    assert ("RoleBinding", "payments", "warden-log-reader") not in state.objects
    assert "does not reach namespace 'payments'" in state.pending[1][0]


def test_expired_and_future_grants_are_not_in_force():
    grants = [
        GrantSpec(1, "viewer", person="alice", expires_at=NOW),
        GrantSpec(2, "viewer", person="bob", starts_at=NOW + timedelta(minutes=1)),
        GrantSpec(3, "viewer", person="carol", expires_at=NOW + timedelta(seconds=1)),
    ]
    binding = compile_(DEV, grants).objects[("ClusterRoleBinding", "", "warden-viewer")]
    assert [s["name"] for s in binding["subjects"]] == ["carol"]


def test_a_changed_role_ref_is_recreated_not_updated():
    before = compile_(DEV, [GrantSpec(1, "developer", person="alice", namespaces=("payments",))])
    after = compile_(PROD, [GrantSpec(1, "developer", person="alice", namespaces=("payments",))])
    plan = diff(after.objects, before.objects)
    assert len(plan.recreate) == 1 and not plan.update


# --- properties ------------------------------------------------------------------------------

people = st.sampled_from(["alice", "bob", "carol", "dave", "leaver"])
teams = st.sampled_from(["payments", "sre", "gone"])
grant_strategy = st.builds(
    GrantSpec,
    id=st.integers(1, 50),
    role=st.sampled_from(sorted(ROLES)),
    team=st.one_of(st.none(), teams),
    person=st.one_of(st.none(), people),
    environments=st.sampled_from([(), ("dev",), ("prod",)]),
    namespaces=st.sampled_from([(), ("payments",), ("team-*",), ("missing", "default")]),
)
cluster_strategy = st.sampled_from(
    [PROD, DEV, ClusterSpec("x", "staging", "tier-2", bind_groups=False)]
)


@settings(max_examples=150, deadline=None)
@given(
    grants=st.lists(grant_strategy, max_size=12, unique_by=lambda g: g.id), cluster=cluster_strategy
)
def test_output_depends_only_on_the_inputs(grants, cluster):
    shuffled = grants[:]
    random.Random(len(grants)).shuffle(shuffled)
    first = compile_(cluster, grants)
    second = compile_(cluster, shuffled, namespaces=list(reversed(NAMESPACES)))
    assert first.objects == second.objects
    assert dict(first.pending) == dict(second.pending)


@settings(max_examples=150, deadline=None)
@given(
    grants=st.lists(grant_strategy, max_size=12, unique_by=lambda g: g.id),
    before=st.lists(grant_strategy, max_size=12, unique_by=lambda g: g.id),
    cluster=cluster_strategy,
)
def test_applying_a_plan_reaches_the_desired_state_and_a_second_plan_is_empty(
    grants, before, cluster
):
    desired = compile_(cluster, grants).objects
    actual = copy.deepcopy(compile_(cluster, before).objects)

    plan = diff(desired, actual)
    for key in plan.delete:
        del actual[key]
    for obj in plan.create + plan.update + plan.recreate:
        meta = obj["metadata"]
        actual[(obj["kind"], meta.get("namespace", ""), meta["name"])] = copy.deepcopy(obj)

    assert diff(desired, actual).empty
    assert actual == desired
