"""The reconciler: list what a cluster holds, diff against the compiled desired state, apply.

A cluster with no drift costs one LIST per managed kind (plus one of namespaces when a grant
names namespaces) and no writes. Kubernetes' rules are honoured: roleRef is immutable (delete +
create), updates carry resourceVersion (409 -> re-read and retry), 429/5xx back off in the
k8s door. Only objects carrying Warden's managed-by label are ever listed, so nothing Warden
does not own is touched.
"""

from __future__ import annotations

import hashlib
import io
import logging
import pickle
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from access.specs import ClusterSpec, DirectorySnapshot, GrantSpec, RoleSpec
from clusters.compiler import (
    MANAGED_BY_LABEL,
    MANAGED_SELECTOR,
    DesiredState,
    ObjectKey,
    ServiceAccountSpec,
    compile_cluster,
)
from clusters.k8s import KubeClient, KubeError
from clusters.plan import Plan, diff, object_key, warden_marks

logger = logging.getLogger(__name__)
MANAGED_KINDS = ("ClusterRole", "ClusterRoleBinding", "RoleBinding")
# Listed only where managed service accounts are, or were at the last run (to remove them), so a
# cluster that never had one pays no extra LIST per reconcile.
ACCOUNT_KIND = "ServiceAccount"
CONFLICT_RETRIES = 3


@dataclass
class Inputs:
    """Everything the compiler needs for one cluster."""

    grants: list[GrantSpec]
    roles: Mapping[str, RoleSpec]
    directory: DirectorySnapshot
    now: datetime
    service_accounts: list[ServiceAccountSpec] = field(default_factory=list)


@dataclass
class Outcome:
    """What one reconcile found and did."""

    plan: Plan
    desired: DesiredState
    # What the cluster held (Warden's objects) when the reconcile listed it.
    actual: dict[ObjectKey, dict[str, Any]] = field(default_factory=dict)
    created: int = 0
    updated: int = 0
    recreated: int = 0
    deleted: int = 0
    drift: int = 0
    api_calls: int = 0
    errors: list[str] = field(default_factory=list)
    # Objects Warden wants whose name is taken by an object it does not own ("RoleBinding
    # ns/name"): left alone, reported for a person to resolve.
    conflicts: list[str] = field(default_factory=list)
    desired_digests: dict[str, str] = field(default_factory=dict)

    @property
    def in_force(self) -> list[int]:
        return sorted(self.desired.carriers)


def digest(obj: Mapping[str, Any]) -> str:
    """A fingerprint of an object as the compiler built it: the same values in the same order
    give the same digest (the compiler always builds them in one order).

    Pickled without its memo, so that the bytes depend on the values alone and not on which
    strings happen to be one object; that is several times cheaper than sorted JSON, and every
    reconcile fingerprints every object it wants. Only ever compared with other digests."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=4)
    pickler.fast = True
    pickler.dump(obj)
    return hashlib.sha256(buffer.getvalue()).hexdigest()[:16]


def key_text(key: ObjectKey) -> str:
    return "/".join(key)


def needs_namespaces(cluster: ClusterSpec, inputs: Inputs) -> bool:
    if any(account.reaches(cluster) for account in inputs.service_accounts):
        return True  # an account's own namespace must exist before its ServiceAccount can
    for grant in inputs.grants:
        if not grant.reaches(cluster):
            continue
        role = inputs.roles.get(grant.role)
        definition = role.definition_for(cluster) if role else None
        if grant.namespaces or (definition is not None and definition.namespaces):
            return True
    return False


def managed_kinds(
    cluster: ClusterSpec, inputs: Inputs, last_desired: Mapping[str, str]
) -> tuple[str, ...]:
    """The kinds to list here: ServiceAccounts only where Warden manages (or managed) some."""
    has_accounts = any(account.reaches(cluster) for account in inputs.service_accounts)
    had_accounts = any(key.startswith(f"{ACCOUNT_KIND}/") for key in last_desired)
    return (*MANAGED_KINDS, ACCOUNT_KIND) if has_accounts or had_accounts else MANAGED_KINDS


def read_actual(
    client: KubeClient, kinds: tuple[str, ...] = MANAGED_KINDS
) -> dict[ObjectKey, dict[str, Any]]:
    actual: dict[ObjectKey, dict[str, Any]] = {}
    for kind in kinds:
        for obj in client.list(kind, label_selector=MANAGED_SELECTOR):
            obj.setdefault("kind", kind)
            actual[object_key(obj)] = obj
    return actual


def reconcile(
    cluster: ClusterSpec,
    client: KubeClient,
    inputs: Inputs,
    last_desired: Mapping[str, str] | None = None,
    dry_run: bool = False,
) -> Outcome:
    """Make the cluster hold exactly the compiled state; dry_run only computes the plan."""
    calls_before = client.calls
    namespaces: list[str] = []
    leaving: list[str] = []
    if needs_namespaces(cluster, inputs):
        for ns in client.list("Namespace"):
            meta = ns["metadata"]
            namespaces.append(meta["name"])
            if meta.get("deletionTimestamp"):
                leaving.append(meta["name"])
    actual = read_actual(client, managed_kinds(cluster, inputs, last_desired or {}))
    desired = compile_cluster(
        cluster,
        inputs.grants,
        inputs.roles,
        inputs.directory,
        namespaces,
        inputs.now,
        inputs.service_accounts,
        leaving,
    )
    plan = diff(desired.objects, actual)
    outcome = Outcome(plan=plan, desired=desired, actual=actual)
    outcome.desired_digests = {key_text(k): digest(v) for k, v in desired.objects.items()}
    if not dry_run and not plan.empty:
        apply(client, plan, actual, outcome)
    taken = {key for key in desired.objects if conflict_text(key) in outcome.conflicts}
    outcome.drift = count_drift(plan, desired.objects, last_desired or {}, taken)
    outcome.api_calls = client.calls - calls_before
    return outcome


def conflict_text(key: ObjectKey) -> str:
    kind, namespace, name = key
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def count_drift(
    plan: Plan,
    desired: Mapping[ObjectKey, Mapping[str, Any]],
    last_desired: Mapping[str, str],
    taken: set[ObjectKey] | frozenset[ObjectKey] = frozenset(),
) -> int:
    """Changes the cluster needs although Warden's intent did not change: someone else's edit.
    A name taken by an object Warden does not own (`taken`) is a conflict, not drift."""
    drift = 0
    for obj in (*plan.create, *plan.update, *plan.recreate):
        key = object_key(obj)
        if key in taken:
            continue
        if last_desired.get(key_text(key)) == digest(desired[key]):
            drift += 1
    # A managed object Warden never meant to hold (copied by hand, or left from a lost delete).
    drift += sum(1 for key in plan.delete if key_text(key) not in last_desired)
    return drift


def apply(
    client: KubeClient, plan: Plan, actual: Mapping[ObjectKey, Mapping[str, Any]], outcome: Outcome
) -> None:
    """Write the plan; one object's failure is recorded and the rest still go through."""
    for key in plan.delete:
        if _guard(outcome, key, lambda key=key: delete_object(client, key, actual[key])):
            outcome.deleted += 1
    for obj in plan.recreate:
        key = object_key(obj)
        if _guard(outcome, key, lambda obj=obj, key=key: _recreate(client, obj, actual[key])):
            outcome.recreated += 1
    for obj in plan.update:
        key = object_key(obj)
        if _guard(outcome, key, lambda obj=obj, key=key: update_object(client, obj, actual[key])):
            outcome.updated += 1
    for obj in plan.create:
        key = object_key(obj)
        if _guard(outcome, key, lambda obj=obj: _create(client, obj)):
            outcome.created += 1


def _guard(outcome: Outcome, key: ObjectKey, action: Any) -> bool:
    try:
        action()
        return True
    except KubeError as exc:
        if exc.reason == NOT_OWNED:
            outcome.conflicts.append(conflict_text(key))
        else:
            outcome.errors.append(f"{key_text(key)}: {exc}")
        return False


def delete_object(client: KubeClient, key: ObjectKey, have: Mapping[str, Any]) -> None:
    kind, namespace, name = key
    try:
        client.delete(kind, name, namespace, resource_version=_rv(have))
    except KubeError as exc:
        if exc.status == 404:
            return  # already gone: the goal is reached
        if exc.status == 409:
            # Changed since we listed it: delete it only if it still carries our label.
            try:
                current = client.get(kind, name, namespace)
            except KubeError as again:
                if again.status == 404:
                    return
                raise
            if not _owned(current):
                raise _not_owned(kind, name) from exc
            client.delete(kind, name, namespace, resource_version=_rv(current))
            return
        raise


def _create(client: KubeClient, obj: Mapping[str, Any]) -> None:
    try:
        client.create(obj)
    except KubeError as exc:
        if exc.status != 409:
            raise
        # Created meanwhile (another worker, or by hand without our label): converge on ours,
        # but only if it is ours to change.
        update_object(client, obj)


NOT_OWNED = "NotOwned"


def _not_owned(kind: str, name: str) -> KubeError:
    return KubeError(
        409, NOT_OWNED, f"{kind} {name!r} exists and is not managed by Warden; it was left alone"
    )


def update_object(
    client: KubeClient, obj: Mapping[str, Any], listed: Mapping[str, Any] | None = None
) -> None:
    """Replace with the listed resourceVersion; on 409 Conflict re-read and try again."""
    kind = obj["kind"]
    meta = obj["metadata"]
    for attempt in range(CONFLICT_RETRIES):
        if attempt == 0 and listed is not None:
            current: Mapping[str, Any] = listed
        else:
            current = client.get(kind, meta["name"], meta.get("namespace", ""))
        if not _owned(current):
            raise _not_owned(kind, meta["name"])
        if current.get("roleRef") and obj.get("roleRef") and current["roleRef"] != obj["roleRef"]:
            _recreate(client, obj, current)
            return
        body = dict(obj)
        body["metadata"] = {**meta, "resourceVersion": _rv(current)}
        if kind == ACCOUNT_KIND:
            body = _merge_marks(current, meta)
        try:
            client.replace(body)
            return
        except KubeError as exc:
            if exc.status != 409 or attempt == CONFLICT_RETRIES - 1:
                raise


def _merge_marks(current: Mapping[str, Any], meta: Mapping[str, Any]) -> dict[str, Any]:
    """The object as it is, with Warden's own labels and annotations set (and stale ones gone)."""
    body = dict(current)
    have = dict(current.get("metadata") or {})
    marks = warden_marks(meta)
    labels = {k: v for k, v in (have.get("labels") or {}).items() if k != MANAGED_BY_LABEL}
    annotations = {
        k: v for k, v in (have.get("annotations") or {}).items() if not k.startswith("warden.io/")
    }
    have["labels"] = {**labels, **marks["labels"]}
    have["annotations"] = {**annotations, **marks["annotations"]}
    body["metadata"] = have
    return body


def _recreate(client: KubeClient, obj: Mapping[str, Any], have: Mapping[str, Any]) -> None:
    kind = obj["kind"]
    meta = obj["metadata"]
    delete_object(client, (kind, meta.get("namespace", ""), meta["name"]), have)
    client.create(obj)


def _owned(obj: Mapping[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    key, _, value = MANAGED_SELECTOR.partition("=")
    return labels.get(key) == value


def _rv(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def shadow_access(
    client: KubeClient, subjects_of_interest: Iterable[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Bindings Warden does not own that name directory people or teams (reported only)."""
    wanted = set(subjects_of_interest)
    found: list[dict[str, Any]] = []
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        for obj in client.list(kind):
            if _owned(obj):
                continue
            meta = obj.get("metadata") or {}
            hits = sorted(
                f"{s.get('kind')}:{s.get('name')}"
                for s in obj.get("subjects") or []
                if (s.get("kind"), s.get("name")) in wanted
            )
            if hits:
                found.append(
                    {
                        "kind": kind,
                        "namespace": meta.get("namespace", ""),
                        "name": meta.get("name"),
                        "role": (obj.get("roleRef") or {}).get("name"),
                        "subjects": hits,
                    }
                )
    return found
