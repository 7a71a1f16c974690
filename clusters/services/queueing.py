"""What to reconcile after a change, and reconciles asked for by people."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from access import audit
from access.models import Grant, Membership
from access.specs import grant_spec
from clusters.choices import ClusterState, ReconcileTrigger
from clusters.models import Cluster, FleetReconcile
from core import queue
from core.types import Actor, account_of


def clusters_reached_by(grants: Iterable[Grant], users_only: bool = False) -> list[int]:
    """Ids of the live clusters any of these grants reaches (in force or not: revokes count).

    users_only: just the clusters that expand teams to users (a change of members matters
    nowhere else, since elsewhere the binding names the group).
    """
    specs = [grant_spec(g) for g in grants]
    if not specs:
        return []
    live = Cluster.objects.exclude(state=ClusterState.RETIRED)
    if users_only:
        live = live.filter(bind_groups=False)
    return [c.pk for c in live if any(g.reaches(c.spec()) for g in specs)]


def queue_reconcile_for_grants(grant_ids: Iterable[int], users_only: bool = False) -> list[int]:
    """Queue a reconcile of just the clusters these grants reach; returns their ids."""
    grants = Grant.objects.filter(pk__in=list(grant_ids)).select_related("role", "team", "person")
    cluster_ids = clusters_reached_by(grants, users_only=users_only)
    for cluster_id in cluster_ids:
        queue.send("clusters.tasks.reconcile_cluster_task", cluster_id, ReconcileTrigger.CHANGE)
    return cluster_ids


def queue_reconcile_for_subjects(
    team_ids: Iterable[int],
    person_ids: Iterable[int],
    membership_team_ids: Iterable[int] = (),
) -> list[int]:
    """After a directory change: reconcile where it changes what the clusters must hold.

    Grants of changed (renamed, gone) teams and of changed people matter everywhere they reach;
    grants of teams whose members changed, or that changed people belong to, matter only on
    clusters that bind users.
    """
    team_ids, person_ids = list(team_ids), list(person_ids)
    member_teams = set(membership_team_ids) | set(
        Membership.objects.filter(person_id__in=person_ids).values_list("team_id", flat=True)
    )
    live = Grant.objects.filter(revoked_at__isnull=True)
    everywhere = live.filter(Q(team_id__in=team_ids) | Q(person_id__in=person_ids))
    queued = queue_reconcile_for_grants(everywhere.values_list("id", flat=True))
    users_only = live.filter(team_id__in=member_teams).exclude(team_id__in=team_ids)
    expand = queue_reconcile_for_grants(users_only.values_list("id", flat=True), users_only=True)
    return sorted(set(queued) | set(expand))


@transaction.atomic
def request_reconcile(cluster: Cluster, *, actor: Actor = None) -> None:
    """Queue a reconcile of one cluster now (after this transaction commits)."""
    if cluster.state == ClusterState.RETIRED:
        raise ValidationError(f"Cluster {cluster.name} is retired; it is not reconciled")
    audit.record("cluster.reconcile_requested", actor=actor, obj=cluster)
    queue_on_commit(cluster.pk, ReconcileTrigger.OPERATOR)


@transaction.atomic
def request_fleet_reconcile(*, actor: Actor = None) -> int:
    """Queue a reconcile of every live cluster; returns how many there are.

    A FleetReconcile row records the request, so the fleet page can follow it as runs finish.
    """
    fleet = start_fleet_reconcile(ReconcileTrigger.OPERATOR, actor=actor)
    count = len(fleet.cluster_ids)
    audit.record(
        "fleet.reconcile_requested",
        actor=actor,
        object_type="clusters.fleet",
        object_repr="fleet",
        after={"clusters": count, "fleet_reconcile": fleet.pk},
    )
    queue.send_on_commit(
        "clusters.tasks.reconcile_fleet_task",
        ReconcileTrigger.OPERATOR,
        fleet_reconcile_id=fleet.pk,
    )
    return count


# A fleet reconcile is kept this long for the fleet page; older rows are pruned as new ones come.
FLEET_RECONCILE_KEPT = timedelta(days=7)


def start_fleet_reconcile(trigger: str, *, actor: Actor = None) -> FleetReconcile:
    """Record a reconcile of every live cluster from now on (the caller fans it out)."""
    ids = sorted(Cluster.objects.exclude(state=ClusterState.RETIRED).values_list("id", flat=True))
    fleet = FleetReconcile.objects.create(
        trigger=trigger,
        requested_by=account_of(actor),
        cluster_ids=ids,
    )
    FleetReconcile.objects.filter(requested_at__lt=timezone.now() - FLEET_RECONCILE_KEPT).delete()
    return fleet


def queue_on_commit(cluster_id: int, trigger: str) -> None:
    queue.send_on_commit("clusters.tasks.reconcile_cluster_task", cluster_id, trigger)
