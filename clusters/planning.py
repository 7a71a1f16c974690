"""Plan before apply: the exact per-cluster diff a change would cause, before it is made.

A change (grants added or removed, roles redefined) is applied to the inputs the reconciler would
load, and each affected cluster is reconciled with dry_run=True: the same listing, compiler and
diff as a real reconcile, without a write. Clusters are read in parallel; one that cannot be
reached is reported, not fatal. The people side asks for plans through access.fleet (the
plan_* helpers there build the Change); access as code calls plan_change directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from access.fleet import Change, ClusterPlan, ObjectChange
from access.specs import GrantSpec
from clusters import k8s
from clusters.k8s import KubeError
from clusters.models import Cluster
from clusters.plan import Plan, comparable, object_key
from clusters.reconcile import Inputs, reconcile
from clusters.services import endpoint_for, live_clusters, load_inputs

MAX_PARALLEL = 16


def affected_clusters(change: Change, grants: Iterable[GrantSpec]) -> list[Cluster]:
    """Live clusters an added, removed or redefined grant reaches."""

    touched = [*change.add, *(g for g in grants if change.touches(g))]
    return [c for c in live_clusters() if any(g.reaches(c.spec()) for g in touched)]


def plan_change(change: Change, clusters: Iterable[Cluster] | None = None) -> list[ClusterPlan]:
    """The diff each affected cluster would see if `change` were made now."""

    base = load_inputs(None, extra_grants=change.add)
    inputs = Inputs(
        grants=[g for g in base.grants if g.id not in change.remove],
        roles={**base.roles, **change.roles},
        directory=base.directory,
        now=base.now,
    )
    targets = list(clusters) if clusters is not None else affected_clusters(change, base.grants)

    def one(cluster: Cluster) -> ClusterPlan:
        result = ClusterPlan(cluster.name)
        client = k8s.client_for(endpoint_for(cluster))
        try:
            outcome = reconcile(cluster.spec(), client, inputs, dry_run=True)
        except KubeError as exc:
            result.error = str(exc)
            return result
        result.changes = describe(outcome.plan, outcome.actual)
        result.pending = dict(outcome.desired.pending)
        return result

    with ThreadPoolExecutor(max_workers=MAX_PARALLEL) as pool:
        plans = list(pool.map(one, targets))
    return sorted(plans, key=lambda p: p.cluster)


def describe(plan: Plan, actual: Mapping[Any, Mapping[str, Any]]) -> list[ObjectChange]:
    """A plan in words: which objects, and for updates which subjects, rules or labels change."""
    out = []
    for obj in plan.create:
        out.append(_change("create", obj, _subjects_or_rules(obj, "+")))
    for obj in plan.recreate:
        have = actual[object_key(obj)]
        before = (have.get("roleRef") or {}).get("name")
        after = (obj.get("roleRef") or {}).get("name")
        out.append(_change("recreate", obj, (f"roleRef {before} → {after}",)))
    for obj in plan.update:
        out.append(_change("update", obj, _difference(actual[object_key(obj)], obj)))
    for kind, namespace, name in plan.delete:
        out.append(ObjectChange("delete", kind, namespace, name))
    return out


def _change(action: str, obj: Mapping[str, Any], details: Iterable[str]) -> ObjectChange:
    kind, namespace, name = object_key(obj)
    return ObjectChange(action, kind, namespace, name, tuple(details))


def _subjects(obj: Mapping[str, Any]) -> set[str]:
    return {f"{s.get('kind')}:{s.get('name')}" for s in obj.get("subjects") or []}


def _subjects_or_rules(obj: Mapping[str, Any], sign: str) -> list[str]:
    if obj.get("kind") == "ClusterRole":
        return [f"{len(obj.get('rules') or [])} rules"]
    role = (obj.get("roleRef") or {}).get("name")
    return [f"roleRef {role}", *(f"{sign} {s}" for s in sorted(_subjects(obj)))]


def _difference(have: Mapping[str, Any], want: Mapping[str, Any]) -> list[str]:
    details = [f"+ {s}" for s in sorted(_subjects(want) - _subjects(have))]
    details += [f"- {s}" for s in sorted(_subjects(have) - _subjects(want))]
    before, after = comparable(have), comparable(want)
    if before.get("rules") != after.get("rules"):
        details.append("rules change")
    if before["metadata"] != after["metadata"]:
        details.append("labels or annotations change")
    return details
