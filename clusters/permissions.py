"""Authorization of the machine side: the cluster registry and discovery are operators' work."""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404

from access.permissions import require_operator
from clusters.models import Cluster, DiscoverySource


def get_cluster_for_operator(user: Any, pk: int) -> Cluster:
    """The cluster, for an operator; 403 for anyone else (before the 404, so ids do not leak)."""
    require_operator(user)
    return get_object_or_404(Cluster, pk=pk)


def get_source_for_operator(user: Any, pk: int) -> DiscoverySource:
    """The discovery source, for an operator; 403 for anyone else."""
    require_operator(user)
    return get_object_or_404(DiscoverySource, pk=pk)


def get_cluster_named_for_operator(user: Any, name: str) -> Cluster:
    """The cluster by name, for an operator; 403 for anyone else (before the 404)."""
    require_operator(user)
    return get_object_or_404(Cluster, name=name)
