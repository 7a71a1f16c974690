"""A directory sync shows its progress live on the health page: queued, running, done, and the
reconciles it queued, in a fragment the page polls (htmx) until nothing is left to happen."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone
from django.utils.html import strip_tags

from access import services
from access.choices import SyncStatus, SyncTrigger
from access.models import DirectorySync, Grant, Role, Team
from access.views import SYNC_QUEUED_AT
from clusters.models import ReconcileRun

pytestmark = pytest.mark.django_db
PROGRESS = "/health/sync/progress"
POLLING = 'hx-trigger="every 2s"'


def fragment(client) -> str:
    """The fragment as a person reads it (tags out, spaces collapsed), and its polling mark."""
    response = client.get(PROGRESS)
    assert response.status_code == 200
    html = response.content.decode()
    words = " ".join(strip_tags(html).split())
    return words + (" " + POLLING if POLLING in html else "")


def test_a_queued_sync_waits_for_a_worker_then_shows_what_it_did(
    client, operator, directory, django_capture_on_commit_callbacks
):
    directory.add_person("alice")
    with django_capture_on_commit_callbacks(execute=False):  # no worker takes it yet
        client.post(reverse("sync-now"))

    waiting = fragment(client)
    assert "waiting for a worker to start it" in waiting and POLLING in waiting

    services.sync_directory(trigger=SyncTrigger.OPERATOR)  # a worker runs it

    done = fragment(client)
    assert "waiting for a worker" not in done
    assert "Succeeded" in done and "Read 1 people and 0 teams" in done
    assert POLLING not in done  # it changed no cluster: nothing left to follow


def test_a_queue_nobody_takes_from_is_said_and_no_longer_polled(client, operator):
    session = client.session
    session[SYNC_QUEUED_AT] = (timezone.now() - timedelta(minutes=11)).isoformat()
    session.save()

    page = fragment(client)

    assert "has not started in ten minutes: no worker is taking tasks" in page
    assert POLLING not in page
    assert SYNC_QUEUED_AT not in client.session  # said once, then forgotten


def test_a_running_sync_is_polled_and_says_how_long_the_last_one_took(client, operator):
    last = DirectorySync.objects.create(trigger="schedule", status=SyncStatus.SUCCEEDED)
    DirectorySync.objects.filter(pk=last.pk).update(
        started_at=timezone.now() - timedelta(minutes=5), duration_s=41.2
    )
    running = DirectorySync.objects.create(trigger="schedule")

    page = fragment(client)

    assert f"Sync #{running.pk} is running" in page
    assert "the last one took 41.2 s" in page
    assert POLLING in page


def test_a_sync_whose_worker_died_is_not_polled_forever(client, operator):
    dead = DirectorySync.objects.create(trigger="schedule")
    DirectorySync.objects.filter(pk=dead.pk).update(started_at=timezone.now() - timedelta(hours=2))

    page = fragment(client)

    assert "its worker most likely died" in page and POLLING not in page


def test_a_sync_that_changes_access_names_the_clusters_it_reconciles(
    client, operator, directory, make_cluster, django_capture_on_commit_callbacks
):
    # a cluster that binds users: a new member of a team changes what it must hold
    cluster, _ = make_cluster("dev", bind_groups=False)
    make_cluster("dev")  # binds the group: a new member changes nothing there
    directory.add_person("alice")
    directory.add_person("bob")
    directory.add_group("payments", people=["alice"])
    services.sync_directory()
    Grant.objects.create(
        team=Team.objects.get(name="payments"), role=Role.objects.get(name="viewer")
    )
    directory.set_members("payments", people=["alice", "bob"])

    with django_capture_on_commit_callbacks(execute=True):
        run = services.sync_directory()

    run.refresh_from_db()
    assert run.reconcile_cluster_ids == [cluster.pk]
    page = fragment(client)
    assert "It changed access on 1 cluster: 1 of 1 reconciled" in page
    assert POLLING not in page


def test_the_reconciles_a_sync_queued_are_counted_as_clusters_report(client, operator, fleet):
    dev, staging = fleet["dev-1"], fleet["staging-1"]
    DirectorySync.objects.create(
        trigger="schedule",
        status=SyncStatus.SUCCEEDED,
        reconcile_cluster_ids=[dev.pk, staging.pk],
    )

    waiting = fragment(client)
    assert "It changed access on 2 clusters: 0 of 2 reconciled" in waiting
    assert POLLING in waiting

    ReconcileRun.objects.create(cluster=dev, trigger="change", status="succeeded")
    ReconcileRun.objects.create(cluster=staging, trigger="change", status="failed", error="boom")

    done = fragment(client)
    assert "2 of 2 reconciled" in done and "1 failed" in done and "boom" in done
    assert POLLING not in done


def test_the_health_page_pages_through_the_syncs(client, operator, monkeypatch):
    monkeypatch.setattr("access.views.HEALTH_SYNCS_PAGE_SIZE", 2)
    for _ in range(3):
        DirectorySync.objects.create(trigger="schedule", status=SyncStatus.SUCCEEDED)

    page = client.get(reverse("health")).content.decode()

    assert "Page 1 of 2" in page


def test_only_operators_follow_a_sync(client):
    client.force_login(get_user_model().objects.create_user("dave"))

    assert client.get(PROGRESS).status_code == 403
