"""The fleet overview: clusters by environment and tier, their reconcile state, filters, pages,
sparklines, and a number of queries that does not grow with the fleet."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from clusters import selectors
from clusters.choices import ClusterState, ReconcileStatus, ReconcileTrigger
from clusters.models import Cluster, ReconcileRun

pytestmark = pytest.mark.django_db

FLEET = reverse("fleet-overview")


def cluster(name, environment="dev", tier="tier-2", state=ClusterState.ACTIVE, runs=(), **fields):
    """A registered cluster (no kubesim needed: the page only reads records) with runs."""
    made = Cluster.objects.create(
        name=name,
        environment=environment,
        tier=tier,
        state=state,
        api_url=f"https://{name}.example.com",
        token=f"token-of-{name}",
        **fields,
    )
    start = timezone.now() - timedelta(hours=len(runs))
    for i, (duration, status, extra) in enumerate(runs):
        run = ReconcileRun.objects.create(
            cluster=made,
            trigger=ReconcileTrigger.SCHEDULE,
            status=status,
            duration_s=duration,
            **extra,
        )
        # started_at is auto_now_add: spread the runs over time as they happened
        ReconcileRun.objects.filter(pk=run.pk).update(started_at=start + timedelta(hours=i))
    if runs:
        last = runs[-1]
        made.last_reconcile_at = timezone.now()
        made.last_reconcile_status = last[1]
        made.last_error = last[2].get("error", "")
        made.save()
    return made


OK = ReconcileStatus.SUCCEEDED
FAILED = ReconcileStatus.FAILED


def test_the_fleet_shows_each_clusters_reconcile_state(client, operator):
    cluster(
        "dev-eu",
        runs=[
            (0.4, OK, {}),
            (0.9, FAILED, {"error": "503 InternalError: etcd is down"}),
            (0.5, OK, {"drift": 3, "pending": {"7": ["namespace team-x does not exist"]}}),
        ],
    )
    cluster("prod-us", environment="prod", tier="tier-0", state=ClusterState.UNREACHABLE)

    text = client.get(FLEET).content.decode()

    assert "dev-eu" in text and "prod-us" in text
    assert "Unreachable" in text
    # drift and pending grants of the newest run; the sparkline marks the failed run
    row = text[text.index("dev-eu") : text.index("prod-us")]
    assert "<td>3</td>" in row
    assert "#pending" in row and ">1</a>" in row
    assert "last 3 reconciles: 0.40 to 0.90 s, 1 failed" in row
    assert row.count('class="fail"') == 1
    assert "token-of" not in text


def test_clusters_are_listed_dev_then_staging_then_prod(client, operator):
    cluster("zeta", environment="prod")
    cluster("alpha", environment="staging")
    cluster("mid", environment="dev")
    text = client.get(FLEET).content.decode()
    assert text.index(">mid<") < text.index(">alpha<") < text.index(">zeta<")


def test_the_summary_counts_live_clusters_by_environment_and_tier(operator):
    cluster("a", environment="prod", tier="tier-0")
    cluster("b", environment="prod", tier="tier-0")
    cluster("c", environment="prod", tier="tier-0", state=ClusterState.RETIRED)
    summary = selectors.fleet_summary()
    prod = next(cells for label, env, cells in summary["grid"] if env == "prod")
    assert dict(prod)["tier-0"] == 2
    assert summary["states"] == {"active": 2, "unreachable": 0, "retired": 1}


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        ({}, {"dev-a", "prod-b", "staging-c"}),
        ({"environment": "prod"}, {"prod-b"}),
        ({"tier": "tier-0"}, {"prod-b"}),
        ({"state": "retired"}, {"old-d"}),
        ({"state": "all"}, {"dev-a", "prod-b", "staging-c", "old-d"}),
        ({"q": "STAG"}, {"staging-c"}),
        ({"environment": "dev", "tier": "tier-0"}, set()),
    ],
)
def test_filters(client, operator, query, shown):
    cluster("dev-a")
    cluster("prod-b", environment="prod", tier="tier-0")
    cluster("staging-c", environment="staging")
    cluster("old-d", state=ClusterState.RETIRED)

    page = client.get(FLEET, query)

    listed = {row.cluster.name for row in page.context["rows"]}
    assert listed == shown


def test_a_filter_that_matches_nothing_says_so(client, operator):
    cluster("dev-a")
    assert "No cluster matches" in client.get(FLEET, {"q": "nope"}).content.decode()


def test_the_fleet_is_paginated_and_pages_keep_the_filters(client, operator, monkeypatch):
    from clusters import views

    monkeypatch.setattr(views, "FLEET_PAGE_SIZE", 2)
    for i in range(5):
        cluster(f"dev-{i}")
    cluster("prod-x", environment="prod")

    first = client.get(FLEET, {"environment": "dev"})
    third = client.get(FLEET, {"environment": "dev", "page": 3})

    assert [r.cluster.name for r in first.context["rows"]] == ["dev-0", "dev-1"]
    assert [r.cluster.name for r in third.context["rows"]] == ["dev-4"]
    assert "environment=dev&amp;page=2" in first.content.decode()
    assert "Page 1 of 3 (5)" in first.content.decode()


def test_the_number_of_queries_does_not_grow_with_the_fleet(
    client, operator, django_assert_max_num_queries
):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(FLEET).status_code == 200
        return len(captured)

    cluster("c-0", runs=[(0.1, OK, {}), (0.2, FAILED, {"error": "x"})])
    small = queries()
    for i in range(1, 40):
        cluster(
            f"c-{i}",
            environment=["dev", "staging", "prod"][i % 3],
            runs=[(0.1 * j, OK, {"pending": {"1": ["why"]}}) for j in range(1, 25)],
        )
    large = queries()

    assert large == small, (small, large)
    with django_assert_max_num_queries(10):
        client.get(FLEET)


def test_the_sparkline_shows_the_newest_twenty_runs_oldest_first():
    made = cluster("spark", runs=[(float(i), OK, {}) for i in range(1, 26)])
    (row,) = selectors.fleet_rows([made])
    assert [d for d, _ in row.durations] == [float(i) for i in range(6, 26)]
    assert row.latest.duration_s == 25.0
    line = selectors.sparkline(row.durations, width=100, height=20)
    first, last = line["points"].split()[0], line["points"].split()[-1]
    assert first.startswith("0.0,") and last == "100.0,2.0"  # the longest run is at the top


def test_a_cluster_without_runs_has_an_empty_sparkline(client, operator):
    cluster("new")
    text = client.get(FLEET).content.decode()
    assert 'aria-label="no runs"' in text and "never" in text


def test_the_fleet_table_sorts_by_a_clicked_column(client, operator):
    cluster("zeta", environment="prod")
    cluster("alpha", environment="staging")
    cluster("mid", environment="dev")

    by_name = client.get(FLEET + "?sort=name").content.decode()
    by_name_reversed = client.get(FLEET + "?sort=-name").content.decode()

    assert by_name.index(">alpha<") < by_name.index(">mid<") < by_name.index(">zeta<")
    assert by_name_reversed.index(">zeta<") < by_name_reversed.index(">mid<")
    assert 'aria-sort="ascending"><a href="?sort=-name">Cluster\u00a0▲</a>' in by_name
