""" "Who can do X on cluster Y?": pure tests of access.whocan.who_can, with the built-in roles'
rules as kubesim's bootstrap policy aggregates them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from access.forbidden import AccessAttempt, CatalogueRole
from access.specs import ClusterSpec, DirectorySnapshot, GrantSpec, RoleDefinitionSpec, RoleSpec
from access.whocan import who_can
from tests.access.test_forbidden_explain import BUILT_IN, CATALOGUE, LOG_READER

NOW = datetime(2030, 1, 1, tzinfo=UTC)
DEV = ClusterSpec("dev-1", "dev", "tier-2")
PROD = ClusterSpec("prod-1", "prod", "tier-0", user_prefix="oidc:", group_prefix="oidc:")
DIRECTORY = DirectorySnapshot(
    team_members={
        "payments": frozenset({"alice", "bob", "mallory"}),
        "sre": frozenset({"carol"}),
    },
    active_people=frozenset({"alice", "bob", "carol", "dave"}),
    active_teams=frozenset({"payments", "sre"}),
)
DELETE_PODS_IN_PAYMENTS = AccessAttempt(verb="delete", resource="pods", namespace="payments")
LIST_NODES = AccessAttempt(verb="list", resource="nodes")


def ask(attempt, grants, cluster=DEV, catalogue=CATALOGUE, **kw):
    return who_can(attempt, cluster, catalogue, BUILT_IN, grants, DIRECTORY, NOW, **kw)


def test_it_names_the_team_its_members_and_the_grant_that_allows_it():
    grants = [
        GrantSpec(1, "developer", team="payments", namespaces=("payments",)),
        GrantSpec(2, "viewer", team="sre"),
    ]

    answer = ask(DELETE_PODS_IN_PAYMENTS, grants)

    assert [(h.subject, h.grant.id, h.verdict.kube_role) for h in answer.holders] == [
        ("team payments", 1, "ClusterRole edit")
    ]
    # mallory is in the team but no longer active: Warden gives her nothing
    assert [(p.username, p.via) for p in answer.people] == [
        ("alice", ("developer via team payments (grant #1)",)),
        ("bob", ("developer via team payments (grant #1)",)),
    ]
    assert answer.teams == ["payments"]


def test_a_person_reached_twice_lists_both_routes():
    grants = [
        GrantSpec(1, "developer", team="payments", namespaces=("pay*",)),
        GrantSpec(2, "operator", person="alice", namespaces=("payments",)),
    ]

    answer = ask(DELETE_PODS_IN_PAYMENTS, grants)

    alice = next(p for p in answer.people if p.username == "alice")
    assert alice.via == (
        "developer via team payments (grant #1)",
        "operator via a personal grant (grant #2)",
    )


def test_a_grant_in_other_namespaces_or_on_other_clusters_does_not_count():
    grants = [
        GrantSpec(1, "developer", team="payments", namespaces=("checkout",)),
        GrantSpec(2, "developer", team="payments", namespaces=("payments",), clusters=("dev-2",)),
        GrantSpec(
            3, "developer", team="payments", namespaces=("payments",), environments=("prod",)
        ),
    ]

    assert ask(DELETE_PODS_IN_PAYMENTS, grants).holders == []


def test_a_role_that_does_not_allow_the_verb_does_not_count():
    # developer is `view` on prod: it reads pods there, it does not delete them
    grants = [GrantSpec(1, "developer", person="dave", namespaces=("payments",))]

    answer = ask(DELETE_PODS_IN_PAYMENTS, grants, cluster=PROD)

    assert answer.holders == []
    assert "developer" not in [v.role for v in answer.allowing_roles]


def test_a_cluster_scoped_request_needs_a_cluster_wide_binding():
    grants = [
        GrantSpec(1, "admin", team="sre"),
        GrantSpec(2, "admin", person="dave", namespaces=("payments",)),
    ]

    answer = ask(LIST_NODES, grants)

    assert [h.grant.id for h in answer.holders] == [1]
    assert [p.username for p in answer.people] == ["carol"]


def test_expired_and_future_grants_and_inactive_subjects_are_left_out_and_counted():
    grants = [
        GrantSpec(1, "admin", person="dave", expires_at=NOW - timedelta(seconds=1)),
        GrantSpec(2, "admin", person="dave", starts_at=NOW + timedelta(hours=1)),
        GrantSpec(3, "admin", person="mallory"),
        GrantSpec(4, "admin", team="gone-team"),
    ]

    answer = ask(LIST_NODES, grants)

    assert answer.holders == []
    assert any("2 grants" in note and "no longer active" in note for note in answer.notes)


def test_warden_managed_rules_are_judged_as_written_with_their_namespace_limits():
    # log-reader: get pods/log, limited to team-* namespaces
    catalogue = [*CATALOGUE, LOG_READER]
    grants = [GrantSpec(1, "log-reader", person="dave", namespaces=("team-*", "payments"))]

    def read_logs(namespace):
        return AccessAttempt(verb="get", resource="pods", subresource="log", namespace=namespace)

    answer = ask(read_logs("team-a"), grants, catalogue=catalogue)
    assert [h.verdict.kube_role for h in answer.holders] == [
        "warden-log-reader (rules Warden manages)"
    ]
    assert [p.username for p in answer.people] == ["dave"]
    assert ask(read_logs("payments"), grants, catalogue=catalogue).holders == []


def test_it_says_which_grants_the_cluster_holds_and_which_wait():
    grants = [
        GrantSpec(1, "admin", team="sre"),
        GrantSpec(2, "admin", person="dave"),
    ]

    answer = ask(
        LIST_NODES,
        grants,
        reconciled=frozenset({1}),
        pending={"2": ["namespace 'x' does not exist yet"]},
    )

    states = {h.grant.id: (h.in_force, h.pending) for h in answer.holders}
    assert states == {1: (True, ()), 2: (False, ("namespace 'x' does not exist yet",))}
    assert any("not in force on the cluster yet" in note for note in answer.notes)


def test_a_never_reconciled_cluster_says_nothing_about_rollout():
    answer = ask(LIST_NODES, [GrantSpec(1, "admin", team="sre")])

    assert answer.holders[0].in_force is None
    assert any("binds teams as groups" in note for note in answer.notes)


def test_a_built_in_role_the_cluster_lacks_allows_nobody():
    grants = [GrantSpec(1, "operator", team="sre", namespaces=("payments",))]
    rules = {k: v for k, v in BUILT_IN.items() if k != "admin"}
    catalogue = [r for r in CATALOGUE if r.name == "operator"]

    answer = who_can(DELETE_PODS_IN_PAYMENTS, DEV, catalogue, rules, grants, DIRECTORY, NOW)

    assert answer.holders == []
    assert "does not exist on dev-1" in answer.verdicts[0].why


def test_a_role_with_namespace_limits_reaches_only_those():
    team_role = CatalogueRole(
        "team-dev",
        "Team developer",
        25,
        RoleSpec("team-dev", (RoleDefinitionSpec(cluster_role="edit", namespaces=("team-*",)),)),
    )
    grants = [GrantSpec(1, "team-dev", person="dave")]
    in_team_ns = AccessAttempt(verb="delete", resource="pods", namespace="team-a")

    assert [h.grant.id for h in ask(in_team_ns, grants, catalogue=[team_role]).holders] == [1]
    assert ask(DELETE_PODS_IN_PAYMENTS, grants, catalogue=[team_role]).holders == []
