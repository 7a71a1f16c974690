"""A fleet reconcile shows its progress live: the fleet page polls a small fragment (htmx) that
counts the clusters done and failed since it was asked for, and stops polling when all reported."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from clusters.choices import ClusterState, ReconcileStatus, ReconcileTrigger
from clusters.models import Cluster, FleetReconcile, ReconcileRun
from clusters.tasks import reconcile_fleet_task

pytestmark = pytest.mark.django_db
PROGRESS = "/clusters/reconcile/progress"
POLLING = 'hx-trigger="every 2s"'


def record(name: str, **fields) -> Cluster:
    return Cluster.objects.create(
        name=name,
        environment="dev",
        tier="tier-2",
        api_url=f"https://{name}.invalid:6443",
        token="unused",
        **fields,
    )


def test_reconcile_fleet_now_is_followed_until_every_cluster_reported(
    client, operator, make_cluster, django_capture_on_commit_callbacks
):
    make_cluster()
    make_cluster()
    down = record("down-1")  # nothing answers there: its reconcile fails

    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("fleet-reconcile"))
    fragment = client.get(PROGRESS).content.decode()

    assert "3 of 3 clusters done" in fragment
    assert "1 failed" in fragment and "down-1" in fragment
    assert POLLING not in fragment  # all reported: the page stops asking
    fleet = FleetReconcile.objects.get()
    assert fleet.trigger == ReconcileTrigger.OPERATOR and fleet.requested_by == operator
    assert down.pk in fleet.cluster_ids


def test_while_clusters_are_still_to_report_the_fragment_keeps_polling(client, operator):
    first, second = record("dev-1"), record("dev-2")
    fleet = FleetReconcile.objects.create(
        trigger=ReconcileTrigger.OPERATOR, cluster_ids=[first.pk, second.pk]
    )
    # a run from before the request does not count
    old = ReconcileRun.objects.create(cluster=first, trigger="schedule", status="succeeded")
    ReconcileRun.objects.filter(pk=old.pk).update(started_at=fleet.requested_at - timedelta(1))

    waiting = client.get(PROGRESS).content.decode()
    assert "0 of 2 clusters done" in waiting and "2 still to report" in waiting
    assert POLLING in waiting

    ReconcileRun.objects.create(cluster=first, trigger="operator", status=ReconcileStatus.SUCCEEDED)
    halfway = client.get(PROGRESS).content.decode()
    assert "1 of 2 clusters done" in halfway and POLLING in halfway

    ReconcileRun.objects.create(cluster=second, trigger="operator", status=ReconcileStatus.FAILED)
    done = client.get(PROGRESS).content.decode()
    assert "2 of 2 clusters done" in done and "1 failed" in done and POLLING not in done


def test_a_cluster_retired_meanwhile_is_not_waited_for(client, operator):
    kept, gone = record("dev-1"), record("dev-2")
    FleetReconcile.objects.create(trigger=ReconcileTrigger.OPERATOR, cluster_ids=[kept.pk, gone.pk])
    Cluster.objects.filter(pk=gone.pk).update(state=ClusterState.RETIRED)
    ReconcileRun.objects.create(cluster=kept, trigger="operator", status=ReconcileStatus.SUCCEEDED)

    assert "1 of 1 cluster done" in client.get(PROGRESS).content.decode()


def test_workers_that_never_answer_are_given_up_on_and_said(client, operator):
    FleetReconcile.objects.create(
        trigger=ReconcileTrigger.OPERATOR,
        cluster_ids=[record("dev-1").pk],
        requested_at=timezone.now() - timedelta(minutes=20),
    )

    fragment = client.get(PROGRESS).content.decode()

    assert "have not reported in a quarter of an hour" in fragment
    assert POLLING not in fragment


def test_the_fleet_page_carries_the_progress_and_the_scheduled_reconcile_records_one(
    client, operator
):
    assert "None yet" in client.get(reverse("fleet-overview")).content.decode()
    record("dev-1")

    reconcile_fleet_task(ReconcileTrigger.SCHEDULE)

    page = client.get(reverse("fleet-overview")).content.decode()
    assert "Last fleet reconcile" in page and "1 of 1 cluster done" in page
    assert FleetReconcile.objects.get().trigger == ReconcileTrigger.SCHEDULE


def test_the_progress_costs_the_same_queries_for_a_large_fleet(client, operator):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(PROGRESS).status_code == 200
        return len(captured)

    ids = [record(f"dev-{i}").pk for i in range(3)]
    FleetReconcile.objects.create(trigger=ReconcileTrigger.OPERATOR, cluster_ids=ids)
    small = queries()
    ids += [record(f"big-{i}").pk for i in range(40)]
    FleetReconcile.objects.create(trigger=ReconcileTrigger.OPERATOR, cluster_ids=ids)
    for pk in ids:
        ReconcileRun.objects.create(cluster_id=pk, trigger="operator", status="succeeded")

    assert queries() == small


def test_only_operators_follow_the_fleet(client, developer):
    client.force_login(developer)

    assert client.get(PROGRESS).status_code == 403
