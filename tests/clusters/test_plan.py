"""Plan before apply: the exact per-cluster diff of a change, from the reconciler's code path."""

from __future__ import annotations

import re

import pytest

from access import fleet
from access import services as access_services
from access.models import Grant
from clusters import services

pytestmark = pytest.mark.django_db


def writes(sim):
    return sum(
        n
        for (verb, _), n in sim.counters.items()
        if verb in ("create", "update", "patch", "delete")
    )


def test_a_new_grant_shows_the_bindings_it_would_create_and_writes_nothing(
    make_cluster, catalogue, people
):
    dev, dev_sim = make_cluster(environment="dev")
    make_cluster(environment="prod")
    sim_writes = writes(dev_sim)

    plans = fleet.plan_new_grant(
        role=catalogue["developer"],
        team=people["payments"],
        environments=["dev"],
        namespaces=["default", "kube-system"],
    )

    assert [p.cluster for p in plans] == [dev.name]  # prod is not reached
    assert [(c.action, c.kind, c.namespace, c.name) for c in plans[0].changes] == [
        ("create", "RoleBinding", "default", "warden-developer"),
        ("create", "RoleBinding", "kube-system", "warden-developer"),
    ]
    assert "+ Group:payments" in plans[0].changes[0].details
    assert writes(dev_sim) == sim_writes
    assert not Grant.objects.exists()


def test_the_plan_matches_what_the_reconcile_then_does(make_cluster, catalogue, people):
    cluster, _sim = make_cluster()
    Grant.objects.create(team=people["payments"], role=catalogue["viewer"])
    services.reconcile_cluster(cluster.pk)

    plans = fleet.plan_new_grant(role=catalogue["viewer"], person=people["carol"])
    grant = Grant.objects.create(person=people["carol"], role=catalogue["viewer"])
    run = services.reconcile_cluster(cluster.pk)

    assert [(c.action, c.name, c.details) for c in plans[0].changes] == [
        ("update", "warden-viewer", ("+ User:carol", "labels or annotations change"))
    ]
    assert (run.created, run.updated, run.deleted) == (0, 1, 0)
    assert grant.pk in run.grants_in_force


def test_revoking_shows_what_goes(make_cluster, catalogue, people):
    cluster, _ = make_cluster()
    grant = Grant.objects.create(person=people["alice"], role=catalogue["viewer"])
    services.reconcile_cluster(cluster.pk)

    plans = fleet.plan_revoke(grant)

    assert [(c.action, c.kind, c.name) for c in plans[0].changes] == [
        ("delete", "ClusterRoleBinding", "warden-viewer")
    ]


def test_a_role_redefinition_shows_the_bindings_it_recreates(make_cluster, catalogue, people):
    cluster, _ = make_cluster(environment="dev")
    Grant.objects.create(
        person=people["alice"], role=catalogue["developer"], namespaces=["default"]
    )
    services.reconcile_cluster(cluster.pk)

    plans = fleet.plan_role_definition(
        catalogue["developer"], environment="", tier="", cluster_role="admin", scope="namespaces"
    )

    assert [(c.action, c.name, c.details) for c in plans[0].changes] == [
        ("recreate", "warden-developer", ("roleRef edit → admin",))
    ]


def test_an_unreachable_cluster_is_reported_in_the_plan(make_cluster, catalogue, people):
    _, good_sim = make_cluster()
    bad, bad_sim = make_cluster()
    bad_sim.faults.unreachable = True
    try:
        plans = fleet.plan_new_grant(role=catalogue["viewer"], team=people["sre"])
    finally:
        bad_sim.faults.unreachable = False

    by_name = {p.cluster: p for p in plans}
    assert "unreachable" in by_name[bad.name].error
    assert by_name[good_sim.name].changes


def test_a_role_whose_own_rules_change_updates_its_cluster_role_everywhere_it_is_used(
    make_cluster, catalogue, people, rbac, django_capture_on_commit_callbacks
):
    cluster, sim = make_cluster()
    rules = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]
    access_services.set_role_definition(catalogue["viewer"], rules=rules, scope="cluster")
    Grant.objects.create(person=people["alice"], role=catalogue["viewer"])
    services.reconcile_cluster(cluster.pk)
    assert rbac.api(sim).read_cluster_role("warden-viewer").rules[0].verbs == ["get", "list"]

    # when an operator adds a verb, the clusters of that role reconcile by themselves
    wider = [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]}]
    with django_capture_on_commit_callbacks(execute=True):
        access_services.set_role_definition(catalogue["viewer"], rules=wider, scope="cluster")

    role = rbac.api(sim).read_cluster_role("warden-viewer")
    assert role.rules[0].resources == ["pods", "pods/log"]
    assert rbac.bindings(sim)["warden-viewer"].role_ref.name == "warden-viewer"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"cluster_role": "", "rules": []}, "Name a ClusterRole"),
        (
            {
                "cluster_role": "view",
                "rules": [{"verbs": ["get"], "resources": ["pods"], "apiGroups": [""]}],
            },
            "not both",
        ),
        ({"rules": [{"resources": ["pods"], "apiGroups": [""]}]}, "names no verbs"),
        ({"rules": [{"verbs": ["get"], "resources": ["pods"]}]}, 'apiGroups: [""]'),
        ({"rules": [{"verbs": ["get"], "resource": ["pods"]}]}, "unknown field resource"),
        ({"cluster_role": "Not A Name"}, "is not a ClusterRole name"),
    ],
)
def test_a_bad_role_definition_is_refused_with_what_to_fix(catalogue, values, message):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match=re.escape(message)):
        access_services.set_role_definition(catalogue["viewer"], **values)


# --- the operator pages -----------------------------------------------------------------------


def test_an_operator_plans_then_applies_a_grant(
    client, django_user_model, make_cluster, catalogue, people
):
    cluster, _sim = make_cluster()
    operator = django_user_model.objects.create_user("olivia", is_staff=True)
    client.force_login(operator)
    data = {
        "team": people["payments"].pk,
        "role": catalogue["developer"].pk,
        "namespaces": "default",
        "reason": "payments deploy to dev",
    }

    planned = client.post("/grants/new", {**data, "plan": "1"}).content.decode()
    assert cluster.name in planned and "warden-developer" in planned and "create" in planned
    assert not Grant.objects.exists()

    applied = client.post("/grants/new", {**data, "apply": "1"})
    grant = Grant.objects.get()
    assert applied["Location"] == f"/grants/{grant.pk}/"
    assert grant.created_by == operator
    page = client.get(f"/grants/{grant.pk}/").content.decode()
    assert cluster.name in page and "Rollout" in page


def test_the_grant_and_role_editors_are_for_operators_only(client, company, catalogue):
    client.force_login(company.alice)
    grant = Grant.objects.create(team=company.teams["payments"], role=catalogue["viewer"])

    assert client.get("/grants/").status_code == 403
    assert client.post("/grants/new", {"plan": "1"}).status_code == 403
    assert client.get(f"/grants/{grant.pk}/").status_code == 403
    assert client.post(f"/grants/{grant.pk}/revoke", {"reason": "x"}).status_code == 403
    assert client.get("/roles/viewer/define").status_code == 403
    assert client.get("/roles/").status_code == 200  # everyone may read the catalogue
    assert Grant.objects.get(pk=grant.pk).revoked_at is None
