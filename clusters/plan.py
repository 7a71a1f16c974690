"""Diff of desired against actual RBAC objects: what to create, update, delete or re-create.

Pure, like the compiler. The reconciler applies a Plan; the "plan before apply" view shows one.
Only objects Warden owns are ever in `actual` (the reconciler lists by the managed-by label), so
a plan can never touch an object Warden did not write.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from clusters.compiler import MANAGED_BY_LABEL, ObjectKey, normalize_rule

COMPARED_METADATA = ("labels", "annotations")


@dataclass
class Plan:
    create: list[dict[str, Any]] = field(default_factory=list)
    update: list[dict[str, Any]] = field(default_factory=list)
    # roleRef is immutable in Kubernetes: a changed roleRef is a delete followed by a create.
    recreate: list[dict[str, Any]] = field(default_factory=list)
    delete: list[ObjectKey] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.create or self.update or self.recreate or self.delete)

    def summary(self) -> dict[str, int]:
        return {
            "create": len(self.create),
            "update": len(self.update),
            "recreate": len(self.recreate),
            "delete": len(self.delete),
        }


def object_key(obj: Mapping[str, Any]) -> ObjectKey:
    metadata = obj.get("metadata") or {}
    return (str(obj["kind"]), str(metadata.get("namespace") or ""), str(metadata["name"]))


def comparable(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of an object Warden decides; server-set fields are left out."""
    metadata = obj.get("metadata") or {}
    out: dict[str, Any] = {
        "metadata": {name: dict(metadata.get(name) or {}) for name in COMPARED_METADATA},
    }
    if obj.get("kind") == "ServiceAccount":
        # Warden decides only its own marks on a ServiceAccount: one adopted from a legacy
        # token keeps its other labels, annotations, secrets and pull secrets as they are.
        out["metadata"] = warden_marks(metadata)
    elif obj.get("kind") == "ClusterRole":
        out["rules"] = sorted((normalize_rule(rule) for rule in obj.get("rules") or []), key=repr)
        # A role Warden aggregates is not one it writes rules for.
        out["aggregationRule"] = obj.get("aggregationRule")
    else:
        out["roleRef"] = dict(obj.get("roleRef") or {})
        out["subjects"] = sorted(
            (
                (s.get("kind"), s.get("apiGroup") or "", s.get("name"), s.get("namespace") or "")
                for s in obj.get("subjects") or []
            ),
        )
    return out


def warden_marks(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The labels and annotations that are Warden's own (managed-by, warden.io/...)."""
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    return {
        "labels": {k: v for k, v in labels.items() if k == MANAGED_BY_LABEL},
        "annotations": {k: v for k, v in annotations.items() if k.startswith("warden.io/")},
    }


BINDING_KINDS = ("RoleBinding", "ClusterRoleBinding")


def _binding_unchanged(want: Mapping[str, Any], have: Mapping[str, Any]) -> bool:
    """True when a binding holds exactly what Warden wrote (the common case): then comparable()
    of both would agree, without building either. False means "compare them fully"."""
    if want.get("kind") not in BINDING_KINDS or have.get("kind") != want.get("kind"):
        return False
    want_meta, have_meta = want.get("metadata") or {}, have.get("metadata") or {}
    return (
        want.get("subjects") == have.get("subjects")
        and want.get("roleRef") == have.get("roleRef")
        and all(
            (want_meta.get(name) or {}) == (have_meta.get(name) or {}) for name in COMPARED_METADATA
        )
    )


def diff(
    desired: Mapping[ObjectKey, Mapping[str, Any]],
    actual: Mapping[ObjectKey, Mapping[str, Any]],
) -> Plan:
    """The smallest set of writes that turns `actual` into `desired`."""
    plan = Plan()
    for key in sorted(desired):
        want = desired[key]
        have = actual.get(key)
        if have is None:
            plan.create.append(dict(want))
            continue
        if _binding_unchanged(want, have):
            continue
        want_cmp, have_cmp = comparable(want), comparable(have)
        if want_cmp == have_cmp:
            continue
        if want_cmp.get("roleRef") != have_cmp.get("roleRef"):
            plan.recreate.append(dict(want))
        else:
            plan.update.append(dict(want))
    plan.delete = sorted(key for key in actual if key not in desired)
    return plan
