"""Scheduled passes share one read of grants and directory per worker process; a change's own
reconcile reads afresh and goes again when it finds its cluster busy."""

from __future__ import annotations

import time
from datetime import timedelta

import psycopg
import pytest
from celery.exceptions import Retry
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from access.models import Grant
from clusters import locks, services
from clusters.choices import ReconcileTrigger
from clusters.tasks import reconcile_cluster_task
from tests.fixtures.services import needs_postgresql

pytestmark = pytest.mark.django_db


@pytest.fixture
def sharing(settings):
    settings.RECONCILE_SHARED_INPUTS_SECONDS = 60
    services.forget_shared_inputs()
    yield
    services.forget_shared_inputs()


def grant_queries(queries) -> int:
    return sum(1 for q in queries if 'FROM "access_grant"' in q["sql"])


def test_a_scheduled_pass_reads_grants_once_for_many_clusters(
    sharing, make_cluster, catalogue, people, rbac
):
    (first, sim1), (second, sim2) = make_cluster(), make_cluster()
    Grant.objects.create(person=people["alice"], role=catalogue["viewer"])

    with CaptureQueriesContext(connection) as one:
        services.reconcile_cluster(first.pk)
    with CaptureQueriesContext(connection) as other:
        services.reconcile_cluster(second.pk)

    assert grant_queries(one.captured_queries) == 1
    assert grant_queries(other.captured_queries) == 0  # the shared read
    assert rbac.subjects(sim1, "warden-viewer") == rbac.subjects(sim2, "warden-viewer") == ["alice"]


def test_a_change_reads_afresh_and_a_later_pass_never_writes_older_inputs(
    sharing, make_cluster, catalogue, people, rbac
):
    cluster, sim = make_cluster()
    grant = Grant.objects.create(person=people["alice"], role=catalogue["viewer"])
    services.reconcile_cluster(cluster.pk)  # a scheduled pass: the shared read holds the grant
    assert rbac.subjects(sim, "warden-viewer") == ["alice"]

    Grant.objects.filter(pk=grant.pk).update(revoked_at=grant.created_at)
    run = services.reconcile_cluster(cluster.pk, trigger=ReconcileTrigger.CHANGE)
    assert run.deleted == 1
    assert rbac.bindings(sim).get("warden-viewer") is None

    # The shared read is older than that run: the pass reads afresh and keeps it revoked.
    again = services.reconcile_cluster(cluster.pk)
    assert again.created == 0
    assert rbac.bindings(sim).get("warden-viewer") is None


def test_a_shared_read_drops_grants_that_expired_since(
    sharing, make_cluster, catalogue, people, rbac
):
    (first, sim1), (second, sim2) = make_cluster(), make_cluster()
    Grant.objects.create(
        person=people["alice"],
        role=catalogue["viewer"],
        expires_at=timezone.now() + timedelta(seconds=1),
    )
    services.reconcile_cluster(first.pk)  # the shared read holds the grant
    assert rbac.subjects(sim1, "warden-viewer") == ["alice"]

    time.sleep(1.2)
    run = services.reconcile_cluster(second.pk)  # same shared read, after the expiry
    assert run.created == 0
    assert rbac.bindings(sim2).get("warden-viewer") is None


def test_a_change_that_finds_its_cluster_busy_goes_again_later(make_cluster, catalogue, people):
    needs_postgresql("advisory locks are PostgreSQL's (CI runs it)")
    cluster, _sim = make_cluster()
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    other = psycopg.connect(**params, autocommit=True)
    try:
        other.execute("SELECT pg_advisory_lock(%s, %s)", (locks.LOCK_CLASS, cluster.pk))
        # a scheduled pass just leaves it to the holder
        assert reconcile_cluster_task.run(cluster.pk, ReconcileTrigger.SCHEDULE) is None
        # a change must not be lost: the holder may have read the grants before it
        with pytest.raises(Retry):
            reconcile_cluster_task.run(cluster.pk, ReconcileTrigger.CHANGE)
    finally:
        other.close()
