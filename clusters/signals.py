"""What the cluster side announces, for the parts of Warden that follow it without being
imported by it (the reconciler knows nothing of service-account rotation)."""

from __future__ import annotations

from django.dispatch import Signal

# A reconcile created objects on a cluster, inside the transaction that records the run.
# Sent with cluster=<Cluster> and created=[(kind, namespace, name), ...].
objects_created = Signal()
