"""The shadow-access scan: bindings Warden does not own that name directory people."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from access import audit
from access.models import Person, Team
from clusters import k8s
from clusters.choices import ClusterState
from clusters.models import Cluster
from clusters.reconcile import shadow_access
from clusters.services.inputs import endpoint_for


def scan_shadow_access(cluster_id: int) -> list[dict[str, object]]:
    """Report bindings Warden does not own that name directory people or teams; touch nothing.

    Runs apart from the reconcile (it lists every binding, not only Warden's), on its own
    schedule. A scan that cannot reach the cluster keeps the last findings.
    """
    cluster = Cluster.objects.get(pk=cluster_id)
    if cluster.state == ClusterState.RETIRED:
        return []
    people = Person.objects.filter(is_active=True).values_list("username", flat=True)
    teams = Team.objects.filter(is_active=True).values_list("name", flat=True)
    subjects = {("User", cluster.user_prefix + u) for u in people.iterator(chunk_size=5000)}
    subjects |= {("Group", cluster.group_prefix + t) for t in teams.iterator(chunk_size=5000)}
    client = k8s.client_for(endpoint_for(cluster))
    found = shadow_access(client, subjects)
    previous = {_finding_key(f) for f in cluster.shadow_access or []}
    new = [f for f in found if _finding_key(f) not in previous]
    with transaction.atomic():
        cluster.shadow_access = found
        cluster.shadow_scanned_at = timezone.now()
        cluster.save(update_fields=["shadow_access", "shadow_scanned_at", "updated_at"])
        if new:
            audit.record(
                "cluster.shadow_access_found",
                obj=cluster,
                after={"new": new[:100], "total": len(found)},
                reason="bindings outside Warden give directory people access",
            )
    return found


def _finding_key(finding: dict[str, object]) -> tuple[object, ...]:
    return (
        finding.get("kind"),
        finding.get("namespace"),
        finding.get("name"),
        str(finding.get("subjects")),
    )
