"""Changes reconcile just the clusters they affect, through the real task path (eager Celery)."""

from __future__ import annotations

import pytest

from access import services as access_services
from access.models import Role, Team
from clusters.models import ReconcileRun

pytestmark = pytest.mark.django_db


def runs(cluster):
    return ReconcileRun.objects.filter(cluster=cluster).count()


def test_a_new_grant_reconciles_only_the_clusters_it_reaches(
    make_cluster, people, rbac, django_capture_on_commit_callbacks
):
    dev, dev_sim = make_cluster(environment="dev")
    prod, _ = make_cluster(environment="prod")

    with django_capture_on_commit_callbacks(execute=True):
        access_services.grant_access(
            role=Role.objects.get(name="viewer"),
            team=people["payments"],
            environments=["dev"],
            namespaces=["default"],
        )

    assert (runs(dev), runs(prod)) == (1, 0)
    assert rbac.subjects(dev_sim, "warden-viewer", "default") == ["payments"]


def test_a_leaver_reconciles_clusters_that_bind_users_not_those_that_bind_groups(
    directory, make_cluster, rbac, django_capture_on_commit_callbacks
):
    # given: payments has alice and bob; one cluster binds the group, one expands to users
    directory.add_person("alice")
    directory.add_person("bob")
    directory.add_group("payments", people=["alice", "bob"])
    access_services.sync_directory()
    groups, _ = make_cluster()
    users, users_sim = make_cluster(bind_groups=False)
    with django_capture_on_commit_callbacks(execute=True):
        access_services.grant_access(
            role=Role.objects.get(name="viewer"),
            team=Team.objects.get(name="payments"),
            namespaces=["default"],
        )
    assert rbac.subjects(users_sim, "warden-viewer", "default") == ["alice", "bob"]
    before = (runs(groups), runs(users))

    # when bob leaves the team in the directory and the directory syncs
    directory.set_members("payments", people=["alice"])
    with django_capture_on_commit_callbacks(execute=True):
        access_services.sync_directory()

    # then only the cluster that names users is reconciled, and bob is gone there
    assert (runs(groups), runs(users)) == (before[0], before[1] + 1)
    assert rbac.subjects(users_sim, "warden-viewer", "default") == ["alice"]
