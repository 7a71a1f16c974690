"""The fleet page's plot of reconcile duration and drift over the last 24 hours."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from clusters import selectors
from clusters.choices import ReconcileStatus, ReconcileTrigger
from clusters.models import Cluster, ReconcileRun

pytestmark = pytest.mark.django_db
FLEET = reverse("fleet-overview")


def run(cluster, hours_ago, duration, drift=0, status=ReconcileStatus.SUCCEEDED, dry_run=False):
    started = timezone.now() - timedelta(hours=hours_ago)
    return ReconcileRun.objects.create(
        cluster=cluster,
        trigger=ReconcileTrigger.SCHEDULE,
        status=status,
        duration_s=duration,
        drift=drift,
        dry_run=dry_run,
        started_at=started,
        finished_at=started + timedelta(seconds=duration),
    )


def registered(name):
    return Cluster.objects.create(
        name=name, environment="dev", tier="tier-2", api_url=f"https://{name}.example.com"
    )


def test_each_hour_shows_its_runs_failures_drift_and_mean_and_longest_duration():
    prod, dev = registered("prod-1"), registered("dev-1")
    run(prod, 0, 2.0, drift=3)
    run(dev, 0, 4.0, status=ReconcileStatus.FAILED)
    run(prod, 5, 1.0)
    run(prod, 30, 9.0)  # older than the window
    run(prod, 0, 50.0, dry_run=True)  # a plan, not a reconcile

    points = selectors.fleet_history(hours=24)

    assert len(points) == 24
    now = points[-1]
    assert (now.runs, now.failed, now.drift) == (2, 1, 3)
    assert (now.avg_s, now.max_s) == (3.0, 4.0)
    assert points[-6].runs == 1 and points[-6].max_s == 1.0
    assert sum(p.runs for p in points) == 3


def test_the_chart_scales_durations_and_drift_to_the_plot_and_marks_failed_hours():
    prod = registered("prod-1")
    run(prod, 2, 1.0, drift=2)
    run(prod, 1, 4.0, drift=4, status=ReconcileStatus.FAILED)
    run(prod, 0, 2.0)

    chart = selectors.history_chart(selectors.fleet_history(hours=24), width=720, height=180)

    plot = chart["plot"]
    longest = [tuple(map(float, p.split(","))) for p in chart["max"].split()]
    assert len(longest) == 3
    # the longest run reaches the top of the plot; a zero would sit on its bottom
    assert min(y for _, y in longest) == plot["y"]
    assert all(plot["y"] <= y <= plot["bottom"] for _, y in longest)
    # the tallest drift bar fills the plot's height, the other is half of it
    heights = sorted(bar["h"] for bar in chart["bars"])
    assert heights == [plot["h"] / 2, plot["h"]]
    assert len(chart["failed"]) == 1
    assert chart["label"].startswith("Reconciles of the last 24 hours: 3 runs, 1 failed")
    assert chart["y_labels"][0]["text"] == "4.00 s" and chart["y_labels"][0]["drift"] == "4"


def test_a_fleet_without_reconciles_draws_an_empty_plot_that_says_so():
    chart = selectors.history_chart(selectors.fleet_history())
    assert chart["empty"] and chart["avg"] == "" and chart["bars"] == []
    assert chart["label"] == "No reconcile in the last 24 hours."


def test_the_fleet_page_draws_the_plot_inline_with_a_text_alternative(client, operator):
    prod = registered("prod-1")
    run(prod, 1, 1.5, drift=2)

    page = client.get(FLEET).content.decode()

    assert '<svg class="history"' in page
    assert 'aria-label="Reconciles of the last 24 hours: 1 runs, 0 failed' in page
    assert '<polyline class="mean"' in page and '<rect class="drift"' in page


def test_the_plot_costs_the_same_queries_however_many_runs(client, operator):
    prod = registered("prod-1")
    run(prod, 1, 1.0)
    client.get(FLEET)
    with CaptureQueriesContext(connection) as few:
        client.get(FLEET)
    for i in range(40):
        run(registered(f"c-{i}"), i % 20, 1.0 + i / 10, drift=i % 3)
    with CaptureQueriesContext(connection) as many:
        client.get(FLEET)
    assert len(many) == len(few)


def test_a_reconcile_records_when_it_began_not_when_it_was_saved(make_cluster):
    from clusters import services

    cluster, sim = make_cluster()
    sim.faults.latency_s = 0.2
    before = timezone.now()
    recorded = services.reconcile_cluster(cluster.pk)
    assert recorded is not None
    assert before <= recorded.started_at < recorded.finished_at
    assert (recorded.finished_at - recorded.started_at).total_seconds() >= 0.2
