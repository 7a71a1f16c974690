"""Data: what the approvals behind existing grants and waiting requests covered.

Grants made from requests, and requests still waiting, were approved (or will be decided) under
the policies of the clusters they reached when they were made: from now on they cover those
environments/tiers and no more (a grant shows as pending on a cluster elsewhere). Batched, apart
from the schema migration (docs/upgrading.md).
"""

from django.db import migrations


def _places(item, clusters):  # type: ignore[no-untyped-def]
    """The environment/tier pairs of the live clusters a grant or request reaches today."""
    selector = getattr(item, "cluster_selector", None) or {}
    places = set()
    for cluster in clusters:
        labels = cluster.labels or {}
        if item.environments and cluster.environment not in item.environments:
            continue
        if item.tiers and cluster.tier not in item.tiers:
            continue
        if item.clusters and cluster.name not in item.clusters:
            continue
        if any(labels.get(k) != v for k, v in selector.items()):
            continue
        places.add(f"{cluster.environment}/{cluster.tier}")
    return sorted(places)


def record_what_approvals_covered(apps, schema_editor):  # type: ignore[no-untyped-def]
    """Grants made from requests, and requests still waiting, were approved under the policies
    of the clusters they reached: they cover those environments/tiers, and no more."""
    Cluster = apps.get_model("clusters", "Cluster")
    Grant = apps.get_model("access", "Grant")
    AccessRequest = apps.get_model("access", "AccessRequest")
    clusters = list(Cluster.objects.exclude(state="retired"))
    grants = Grant.objects.filter(source="request", revoked_at__isnull=True, covers__isnull=True)
    _in_batches(grants, "covers", clusters)
    _in_batches(AccessRequest.objects.filter(state="pending", covers=[]), "covers", clusters)


def _in_batches(rows, field, clusters, size=500):  # type: ignore[no-untyped-def]
    batch = []
    for row in rows.iterator(chunk_size=size):
        setattr(row, field, _places(row, clusters))
        batch.append(row)
        if len(batch) == size:
            type(row).objects.bulk_update(batch, [field])
            batch = []
    if batch:
        type(batch[0]).objects.bulk_update(batch, [field])



class Migration(migrations.Migration):
    dependencies = [("clusters", "0008_service_account_approvals")]
    operations = [
        migrations.RunPython(record_what_approvals_covered, migrations.RunPython.noop),
    ]
