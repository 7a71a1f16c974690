"""What a cluster says now, for pages and previews: its roles' rules and its namespaces
(cached briefly, answered within an interactive timeout)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from django.core.cache import cache

from clusters import k8s
from clusters.choices import ClusterState, ReconcileStatus
from clusters.k8s import KubeError, Unreachable
from clusters.models import Cluster
from clusters.services.inputs import endpoint_for

# A page that explains access reads built-in ClusterRoles (view, edit, admin, aggregated ones) as
# each cluster holds them; they change rarely, so a short cache spares the API on every view.
CLUSTER_ROLE_CACHE_S = 60
# A person is waiting: one short try, not the reconciler's patient back-off.
INTERACTIVE_TIMEOUT_S = 5.0


def cluster_role_rules(
    cluster: Cluster, names: Iterable[str]
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
    """The rules of these ClusterRoles on `cluster` (one the cluster lacks is left out), and for
    each that could not be read, why (unreachable, refused). Cached per cluster for
    CLUSTER_ROLE_CACHE_S."""
    wanted = sorted(set(names))
    rules: dict[str, list[dict[str, Any]]] = {}
    errors: dict[str, str] = {}
    client: k8s.KubeClient | None = None
    try:
        for name in wanted:
            key = f"warden:clusterrole-rules:{cluster.pk}:{name}"
            cached = cache.get(key)
            if cached is not None:
                rules[name] = cached
                continue
            if client is None:
                endpoint = replace(endpoint_for(cluster), timeout_s=INTERACTIVE_TIMEOUT_S)
                client = k8s.KubeClient(endpoint, max_attempts=1)
            try:
                rules[name] = client.cluster_role_rules(name)
            except Unreachable as exc:
                # The other roles would fail the same way; say so once per role, quickly.
                for other in wanted:
                    errors.setdefault(other, f"{cluster.name} is unreachable ({exc.message})")
                break
            except KubeError as exc:
                if exc.status != 404:  # absent: left out of `rules`, which says just that
                    errors[name] = f"{cluster.name} answered {exc.status} {exc.reason}"
                continue
            cache.set(key, rules[name], CLUSTER_ROLE_CACHE_S)
    finally:
        if client is not None:
            client.close()
    for name in rules:
        errors.pop(name, None)
    return rules, errors


NAMESPACES_CACHE_S = 60


def answering_clusters() -> dict[str, Cluster]:
    """Live clusters whose last reconcile succeeded, by name: the ones worth asking now."""
    clusters = Cluster.objects.filter(
        state=ClusterState.ACTIVE, last_reconcile_status=ReconcileStatus.SUCCEEDED
    )
    return {cluster.name: cluster for cluster in clusters}


def namespaces_missing(
    cluster_names: Iterable[str],
    wanted: Iterable[str],
    answering: dict[str, Cluster] | None = None,
) -> dict[str, list[str]]:
    """The namespaces named (not patterns) that do not exist on each cluster, so that people
    learn it before approving. Only clusters whose last reconcile succeeded are asked (one
    LIST, cached for a minute); a cluster that does not answer is left out."""
    names = plain_names(wanted)
    if not names:
        return {}
    answering = answering_clusters() if answering is None else answering
    missing: dict[str, list[str]] = {}
    for name in sorted(set(cluster_names) & set(answering)):
        cluster = answering[name]
        existing = _namespaces_of(cluster)
        absent = [n for n in names if existing is not None and n not in existing]
        if absent:
            missing[cluster.name] = absent
    return missing


def plain_names(wanted: Iterable[str]) -> list[str]:
    """The names among namespace names and patterns, sorted."""
    return sorted({n for n in wanted if not any(c in n for c in "*?[")})


def _namespaces_of(cluster: Cluster) -> set[str] | None:
    where = hashlib.sha256(cluster.api_url.encode()).hexdigest()[:16]
    key = f"warden:namespaces:{cluster.pk}:{where}"
    cached = cache.get(key)
    if cached is None:
        try:
            listed = k8s.client_for(endpoint_for(cluster)).list("Namespace")
            cached = [item["metadata"]["name"] for item in listed]
        except KubeError:
            return None
        cache.set(key, cached, NAMESPACES_CACHE_S)
    return set(cached)
