"""One emulated cluster's object store: kinds, validation, resourceVersion, selectors, paging."""

from __future__ import annotations

import base64
import builtins
import copy
import json
import re
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubesim import workloads

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
HISTORY = 1000  # changes a watch can be resumed from
NAMESPACE_FINALIZE_S = 0.5  # how long a deleted namespace stays Terminating
# Records field ownership on a write: (the object before or None, after) -> after, owned.
Owner = Callable[[dict[str, Any] | None, dict[str, Any]], dict[str, Any]]
# RBAC object names follow path-segment rules: anything but "/" and "%", not "." or "..".
PATH_SEGMENT = re.compile(r"^[^/%]+$")


class ApiError(Exception):
    """An error the API server answers with a Status body."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}
        self.empty_details = details == {}  # `"details": {}` is sent, as some answers have it
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details or self.empty_details:
            body["details"] = self.details
        return body


@dataclass(frozen=True)
class Kind:
    """A resource type the emulator serves."""

    kind: str
    plural: str
    group: str
    version: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    validate: Callable[[dict[str, Any], dict[str, Any] | None], list[str]] | None = None
    name_rule: str = "subdomain"
    # Defaulting and mutating admission, run before validation (e.g. a Service's clusterIP).
    default: Callable[[dict[str, Any], dict[str, Any] | None], None] | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


def _validate_binding(obj: dict[str, Any], old: dict[str, Any] | None) -> list[str]:
    errors = []
    ref = obj.get("roleRef")
    if not isinstance(ref, dict) or not ref.get("name") or not ref.get("kind"):
        errors.append("roleRef: Required value")
    elif ref.get("kind") not in ("Role", "ClusterRole"):
        errors.append(f'roleRef.kind: Unsupported value: "{ref.get("kind")}"')
    if obj["kind"] == "ClusterRoleBinding" and isinstance(ref, dict) and ref.get("kind") == "Role":
        errors.append('roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole"')
    if old is not None and isinstance(ref, dict) and ref != old.get("roleRef"):
        value = {
            "APIGroup": ref.get("apiGroup", ""),
            "Kind": ref.get("kind"),
            "Name": ref.get("name"),
        }
        errors.append(
            f"roleRef: Invalid value: {json.dumps(value, separators=(',', ':'))}: field is immutable"
        )
    for i, subject in enumerate(obj.get("subjects") or []):
        if not subject.get("name"):
            errors.append(f"subjects[{i}].name: Required value")
        if subject.get("kind") not in ("User", "Group", "ServiceAccount"):
            errors.append(f'subjects[{i}].kind: Unsupported value: "{subject.get("kind")}"')
        if subject.get("kind") == "ServiceAccount" and not subject.get("namespace"):
            errors.append(f"subjects[{i}].namespace: Required value")
    return errors


def _validate_role(obj: dict[str, Any], old: dict[str, Any] | None) -> list[str]:
    errors = []
    for i, rule in enumerate(obj.get("rules") or []):
        if not rule.get("verbs"):
            errors.append(
                f"rules[{i}].verbs: Required value: verbs must contain at least one value"
            )
        if rule.get("nonResourceURLs") and obj["kind"] == "Role":
            errors.append(
                f"rules[{i}].nonResourceURLs: Invalid value: namespaced rules cannot apply to non-resource URLs"
            )
        if not rule.get("nonResourceURLs") and not rule.get("resources"):
            errors.append(
                f"rules[{i}].resources: Required value: resource rules must supply at least one resource"
            )
    return errors


def builtin_kinds() -> list[Kind]:
    rbac = "rbac.authorization.k8s.io"
    return [
        Kind("Namespace", "namespaces", "", "v1", False, ("ns",), name_rule="label"),
        Kind("ServiceAccount", "serviceaccounts", "", "v1", True, ("sa",)),
        Kind(
            "Secret",
            "secrets",
            "",
            "v1",
            True,
            validate=workloads.validate_secret,
            default=workloads.default_secret,
        ),
        Kind(
            "ConfigMap",
            "configmaps",
            "",
            "v1",
            True,
            ("cm",),
            validate=workloads.validate_config_map,
        ),
        Kind("Pod", "pods", "", "v1", True, ("po",)),
        Kind(
            "Service",
            "services",
            "",
            "v1",
            True,
            ("svc",),
            workloads.validate_service,
            "label",
            workloads.default_service,
        ),
        Kind(
            "Deployment",
            "deployments",
            "apps",
            "v1",
            True,
            ("deploy",),
            workloads.validate_deployment,
            default=workloads.default_deployment,
        ),
        Kind(
            "Job",
            "jobs",
            "batch",
            "v1",
            True,
            (),
            workloads.validate_job,
            default=workloads.default_job,
        ),
        Kind(
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            "policy",
            "v1",
            True,
            ("pdb",),
            workloads.validate_pdb,
            default=workloads.default_pdb,
        ),
        Kind(
            "NetworkPolicy",
            "networkpolicies",
            "networking.k8s.io",
            "v1",
            True,
            ("netpol",),
            workloads.validate_network_policy,
            default=workloads.default_network_policy,
        ),
        Kind("Role", "roles", rbac, "v1", True, validate=_validate_role, name_rule="path"),
        Kind(
            "ClusterRole",
            "clusterroles",
            rbac,
            "v1",
            False,
            validate=_validate_role,
            name_rule="path",
        ),
        Kind(
            "RoleBinding",
            "rolebindings",
            rbac,
            "v1",
            True,
            validate=_validate_binding,
            name_rule="path",
        ),
        Kind(
            "ClusterRoleBinding",
            "clusterrolebindings",
            rbac,
            "v1",
            False,
            validate=_validate_binding,
            name_rule="path",
        ),
    ]


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- selectors --------------------------------------------------------------------------------

_SET_EXPR = re.compile(r"^\s*(!?)([A-Za-z0-9_./-]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")


def parse_label_selector(text: str) -> Callable[[dict[str, str]], bool]:
    """Equality- and set-based label selectors, as kube-apiserver parses them."""
    if not text:
        return lambda labels: True
    tests: list[Callable[[dict[str, str]], bool]] = []
    for part in _split_selector(text):
        part = part.strip()
        if "!=" in part:
            key, value = (s.strip() for s in part.split("!=", 1))
            tests.append(_label_test(key, "!=", value))
        elif "==" in part or ("=" in part and " in " not in part and "notin" not in part):
            key, value = (s.strip() for s in part.replace("==", "=").split("=", 1))
            tests.append(_label_test(key, "=", value))
        else:
            match = _SET_EXPR.match(part)
            if not match:
                raise ApiError(
                    400,
                    "BadRequest",
                    f'unable to parse requirement: invalid label selector "{text}"',
                )
            negate, key, op, values = match.groups()
            options = {v.strip() for v in (values or "").split(",") if v.strip()}
            if op == "in":
                tests.append(_label_test(key, "in", options))
            elif op == "notin":
                tests.append(_label_test(key, "notin", options))
            elif negate:
                tests.append(_label_test(key, "!exists"))
            else:
                tests.append(_label_test(key, "exists"))
    return lambda labels: all(test(labels) for test in tests)


def _label_test(
    key: str, op: str, operand: str | set[str] | None = None
) -> Callable[[dict[str, str]], bool]:
    """One requirement of a label selector, bound to its key, operator and value(s)."""

    def test(labels: dict[str, str]) -> bool:
        have = labels.get(key)
        if op == "=":
            return have == operand
        if op == "!=":
            return have != operand
        if op == "in":
            return have in (operand or set())
        if op == "notin":
            return have not in (operand or set())
        if op == "exists":
            return have is not None
        return have is None

    return test


def _split_selector(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p for p in parts if p.strip()]


def parse_field_selector(text: str) -> Callable[[dict[str, Any]], bool]:
    if not text:
        return lambda obj: True
    tests = []
    for part in text.split(","):
        negate = "!=" in part
        key, value = (s.strip() for s in part.replace("!=", "=").replace("==", "=").split("=", 1))
        if key not in ("metadata.name", "metadata.namespace", "type"):
            raise ApiError(
                400,
                "BadRequest",
                f'"{key}" is not a known field selector: only "metadata.name", "metadata.namespace"',
            )

        def test(obj: dict[str, Any], k: str = key, v: str = value, n: bool = negate) -> bool:
            actual = (
                obj.get("type", "") if k == "type" else obj["metadata"].get(k.split(".", 1)[1], "")
            )
            return (actual != v) if n else (actual == v)

        tests.append(test)
    return lambda obj: all(t(obj) for t in tests)


# --- the store --------------------------------------------------------------------------------


@dataclass
class Snapshot:
    keys: list[tuple[str, str]]
    objects: dict[tuple[str, str], dict[str, Any]]
    resource_version: str


@dataclass
class Store:
    """All objects of one cluster, by kind then (namespace, name)."""

    kinds: dict[str, Kind] = field(default_factory=dict)
    objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = field(default_factory=dict)
    revision: int = 1
    lock: threading.RLock = field(default_factory=threading.RLock)
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    on_change: list[Callable[[str, str, dict[str, Any] | None], None]] = field(default_factory=list)
    # The newest changes (resourceVersion, plural, event, object), for watches that start at a
    # resourceVersion a list gave (kube-apiserver's watch cache).
    history: deque[tuple[int, str, str, dict[str, Any]]] = field(
        default_factory=lambda: deque(maxlen=HISTORY)
    )
    # Each stored object's JSON, from its write until it is replaced or deleted (a write stores
    # a new dict, so a stored object never changes; ClusterRoles are the exception: the
    # aggregation controller fills their rules in place, so they are never kept).
    encoded: dict[int, tuple[dict[str, Any], str]] = field(default_factory=dict)

    def register(self, kind: Kind) -> None:
        with self.lock:
            self.kinds[kind.plural] = kind
            self.objects.setdefault(kind.plural, {})

    def kind_for(self, group: str, plural: str) -> Kind:
        kind = self.kinds.get(plural)
        if kind is None or kind.group != group:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return kind

    def _next_rv(self) -> str:
        self.revision += 1
        return str(self.revision)

    # --- reads ------------------------------------------------------------------------------

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any]:
        with self.lock:
            obj = self.objects[kind.plural].get((namespace, name))
            if obj is None:
                raise not_found(kind, name)
            return copy.deepcopy(obj)

    def peek(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored object itself (no copy) for internal readers such as the authorizer."""
        return self.objects.get(plural, {}).get((namespace, name))

    def items(self, plural: str) -> Iterable[dict[str, Any]]:
        return list(self.objects.get(plural, {}).values())

    def list(
        self,
        kind: Kind,
        namespace: str,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_token: str = "",
    ) -> dict[str, Any]:
        """A list response whose items are copies of the stored objects."""
        items, meta = self._select(
            kind, namespace, label_selector, field_selector, limit, continue_token, copy.deepcopy
        )
        return {
            "kind": f"{kind.kind}List",
            "apiVersion": kind.api_version,
            "metadata": meta,
            "items": items,
        }

    def list_json(
        self,
        kind: Kind,
        namespace: str,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_token: str = "",
    ) -> bytes:
        """The same list response, already encoded: each object is encoded once under the lock
        instead of copied and encoded later (the HTTP server's hot path on large lists)."""
        encode = _as_list_item if kind.plural == "clusterroles" else self._encoded
        items, meta = self._select(
            kind, namespace, label_selector, field_selector, limit, continue_token, encode
        )
        head = json.dumps(
            {"kind": f"{kind.kind}List", "apiVersion": kind.api_version, "metadata": meta}
        )
        return (head[:-1] + ', "items": [' + ", ".join(items) + "]}").encode()

    def _encoded(self, obj: dict[str, Any]) -> str:
        entry = self.encoded.get(id(obj))
        if entry is None or entry[0] is not obj:
            entry = self.encoded[id(obj)] = (obj, _as_list_item(obj))
        return entry[1]

    def _remember_encoded(self, kind: Kind, obj: dict[str, Any]) -> None:
        # Encoded as it is written: an object is written once and listed many times.
        if kind.plural != "clusterroles":
            self.encoded[id(obj)] = (obj, _as_list_item(obj))

    def _forget(self, obj: dict[str, Any]) -> None:
        self.encoded.pop(id(obj), None)

    def _select(
        self,
        kind: Kind,
        namespace: str,
        label_selector: str,
        field_selector: str,
        limit: int,
        continue_token: str,
        take: Callable[[dict[str, Any]], Any],
    ) -> tuple[builtins.list[Any], dict[str, Any]]:
        labels_ok = parse_label_selector(label_selector)
        fields_ok = parse_field_selector(field_selector)
        with self.lock:
            if continue_token:
                snapshot, start = self._resume(continue_token)
            else:
                bucket = self.objects[kind.plural]
                keys = sorted(k for k in bucket if not namespace or k[0] == namespace)
                snapshot = Snapshot(keys, {k: bucket[k] for k in keys}, str(self.revision))
                start = 0
            picked: list[Any] = []
            index = start
            while index < len(snapshot.keys) and (not limit or len(picked) < limit):
                obj = snapshot.objects[snapshot.keys[index]]
                index += 1
                if labels_ok(obj["metadata"].get("labels") or {}) and fields_ok(obj):
                    picked.append(take(obj))
            meta: dict[str, Any] = {"resourceVersion": snapshot.resource_version}
            if limit and index < len(snapshot.keys):
                token_id = uuid.uuid4().hex
                self.snapshots[token_id] = snapshot
                if len(self.snapshots) > 2000:  # old snapshots expire, as etcd compacts
                    self.snapshots.pop(next(iter(self.snapshots)))
                meta["continue"] = base64.urlsafe_b64encode(
                    json.dumps({"id": token_id, "start": index}).encode()
                ).decode()
                meta["remainingItemCount"] = len(snapshot.keys) - index
        return picked, meta

    def _resume(self, token: str) -> tuple[Snapshot, int]:
        """The snapshot a continue token names: 400 if it is no token of ours, 410 Expired if
        its snapshot is gone (as kube-apiserver answers for a compacted resourceVersion)."""
        try:
            data = json.loads(base64.urlsafe_b64decode(token.encode()))
            snapshot_id, start = str(data["id"]), int(data["start"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ApiError(400, "BadRequest", f"continue key is not valid: {exc}") from exc
        snapshot = self.snapshots.get(snapshot_id)
        if snapshot is None:
            raise ApiError(
                410,
                "Expired",
                "The provided continue parameter is too old to display a consistent list result. "
                "You can start a new list without the continue parameter.",
            )
        return snapshot, start

    # --- writes -----------------------------------------------------------------------------

    def create(
        self,
        kind: Kind,
        namespace: str,
        obj: dict[str, Any],
        dry_run: bool = False,
        owner: Owner | None = None,
    ) -> dict[str, Any]:
        """`owner(old, new)`, when given, records who set which field once defaults are in."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        name = meta.get("name") or ""
        obj["kind"], obj["apiVersion"] = kind.kind, kind.api_version
        if kind.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise ApiError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        meta["uid"] = str(uuid.uuid4())  # before defaulting: a Job's selector names its uid
        self._validate(kind, obj, None)
        if owner is not None:
            obj = owner(None, obj)
            meta = obj["metadata"]
        with self.lock:
            if kind.namespaced:
                ns = self.peek("namespaces", "", namespace)
                if ns is None:
                    raise ApiError(
                        404,
                        "NotFound",
                        f'namespaces "{namespace}" not found',
                        {"name": namespace, "kind": "namespaces"},
                    )
                if ns["metadata"].get("deletionTimestamp"):
                    raise ApiError(
                        403,
                        "Forbidden",
                        f'{kind.plural} "{name}" is forbidden: unable to create new content in namespace {namespace} because it is being terminated',
                    )
            bucket = self.objects[kind.plural]
            key = (namespace if kind.namespaced else "", name)
            if key in bucket:
                raise ApiError(
                    409,
                    "AlreadyExists",
                    f'{kind.qualified} "{name}" already exists',
                    _details(kind, name),
                )
            meta["creationTimestamp"] = now_rfc3339()
            meta.pop("resourceVersion", None)
            if kind.kind == "Namespace":
                # (kube-apiserver's namespace strategy: the kubernetes finalizer is always there)
                finalizers = (obj.get("spec") or {}).get("finalizers") or []
                if "kubernetes" not in finalizers:
                    obj["spec"] = {
                        **(obj.get("spec") or {}),
                        "finalizers": [*finalizers, "kubernetes"],
                    }
                obj["status"] = {"phase": "Active"}
                label_namespace(obj)
            if dry_run:
                return obj
            meta["resourceVersion"] = self._next_rv()
            bucket[key] = obj
            self._remember_encoded(kind, obj)
            self._changed(kind.plural, "ADDED", obj)
            return copy.deepcopy(obj)

    def update(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        obj: dict[str, Any],
        dry_run: bool = False,
        owner: Owner | None = None,
    ) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if meta.get("name") and meta["name"] != name:
            raise ApiError(
                400, "BadRequest", "the name of the object does not match the name on the URL"
            )
        meta["name"] = name
        obj["kind"], obj["apiVersion"] = kind.kind, kind.api_version
        if kind.namespaced:
            meta["namespace"] = namespace
        with self.lock:
            key = (namespace if kind.namespaced else "", name)
            old = self.objects[kind.plural].get(key)
            if old is None:
                raise not_found(kind, name)
            wanted_rv = meta.get("resourceVersion")
            if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {kind.qualified} "{name}": the object has been modified; please apply your changes to the latest version and try again',
                    _details(kind, name),
                )
            for preserved in ("uid", "creationTimestamp", "deletionTimestamp"):
                if preserved in old["metadata"]:
                    meta[preserved] = old["metadata"][preserved]
            self._validate(kind, obj, old)
            if owner is not None:
                obj = owner(old, obj)
                meta = obj["metadata"]
            if kind.kind == "Namespace":
                obj["status"] = old.get("status", {"phase": "Active"})
                label_namespace(obj)
            if _semantic(obj) == _semantic(old):
                return copy.deepcopy(old)  # a no-op write keeps its resourceVersion
            if dry_run:
                meta["resourceVersion"] = old["metadata"]["resourceVersion"]
                return obj
            meta["resourceVersion"] = self._next_rv()
            self._forget(old)
            self.objects[kind.plural][key] = obj
            self._remember_encoded(kind, obj)
            self._changed(kind.plural, "MODIFIED", obj)
            return copy.deepcopy(obj)

    def delete(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        precondition_rv: str = "",
        dry_run: bool = False,
        precondition_uid: str = "",
    ) -> dict[str, Any]:
        with self.lock:
            key = (namespace if kind.namespaced else "", name)
            old = self.objects[kind.plural].get(key)
            if old is None:
                raise not_found(kind, name)
            if precondition_uid and precondition_uid != old["metadata"]["uid"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {kind.qualified} "{name}": Precondition failed: UID in precondition: {precondition_uid}, UID in object meta: {old["metadata"]["uid"]}',
                    _details(kind, name),
                )
            if precondition_rv and precondition_rv != old["metadata"]["resourceVersion"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {kind.qualified} "{name}": the ResourceVersion in the precondition ({precondition_rv}) does not match the ResourceVersion in record ({old["metadata"]["resourceVersion"]}). The object might have been modified',
                    _details(kind, name),
                )
            if kind.kind == "Namespace":
                return self._terminate(kind, key, old, dry_run)
            if dry_run:
                return copy.deepcopy(old)
            del self.objects[kind.plural][key]
            self._forget(old)
            self._changed(kind.plural, "DELETED", old)
            return copy.deepcopy(old)

    def _terminate(
        self, kind: Kind, key: tuple[str, str], old: dict[str, Any], dry_run: bool
    ) -> dict[str, Any]:
        """A deleted namespace terminates: it refuses new content at once, and the namespace
        controller removes what it holds, then the namespace, a moment later (kube-apiserver
        with kube-controller-manager take a few seconds; kubesim NAMESPACE_FINALIZE_S)."""
        if old["metadata"].get("deletionTimestamp"):
            return copy.deepcopy(old)  # already terminating
        terminating = copy.deepcopy(old)
        terminating["metadata"]["deletionTimestamp"] = now_rfc3339()
        terminating["status"] = {"phase": "Terminating"}
        if dry_run:
            return terminating
        terminating["metadata"]["resourceVersion"] = self._next_rv()
        self._forget(old)
        self.objects[kind.plural][key] = terminating
        self._remember_encoded(kind, terminating)
        self._changed(kind.plural, "MODIFIED", terminating)
        timer = threading.Timer(NAMESPACE_FINALIZE_S, self._finalize_namespace, (key[1],))
        timer.daemon = True
        timer.start()
        return copy.deepcopy(terminating)

    def _finalize_namespace(self, name: str) -> None:
        with self.lock:
            namespace = self.objects["namespaces"].pop(("", name), None)
            if namespace is None:
                return
            self._delete_namespace_contents(name)
            self._forget(namespace)
            self._changed("namespaces", "DELETED", namespace)

    def _delete_namespace_contents(self, namespace: str) -> None:
        # The namespace controller: kubesim has no slow finalizers.
        for kind in self.kinds.values():
            if kind.namespaced:
                for key in [k for k in self.objects[kind.plural] if k[0] == namespace]:
                    obj = self.objects[kind.plural].pop(key)
                    self._forget(obj)
                    self._changed(kind.plural, "DELETED", obj)

    def _validate(self, kind: Kind, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        name = obj["metadata"].get("name") or ""
        errors = []
        try:
            if kind.default is not None:
                kind.default(obj, old)
            if kind.validate is not None:
                errors.extend(kind.validate(obj, old))
        except workloads.BadRequest as exc:
            raise ApiError(
                400,
                "BadRequest",
                f'{kind.kind} in version "{kind.version}" cannot be handled as a {kind.kind}: {exc}',
            ) from exc
        if not name:
            errors.append("metadata.name: Required value: name or generateName is required")
        elif kind.name_rule == "label" and (len(name) > 63 or not DNS1123_LABEL.match(name)):
            errors.append(
                f"metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
            )
        elif kind.name_rule == "subdomain" and (
            len(name) > 253 or not DNS1123_SUBDOMAIN.match(name)
        ):
            errors.append(
                f"metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            )
        elif kind.name_rule == "path" and (name in (".", "..") or not PATH_SEGMENT.match(name)):
            errors.append(f"metadata.name: Invalid value: \"{name}\": may not contain '/' or '%'")
        for value in (obj["metadata"].get("labels") or {}).values():
            if not isinstance(value, str) or len(value) > 63:
                errors.append(
                    f'metadata.labels: Invalid value: "{value}": must be no more than 63 characters'
                )
        if errors:
            raise invalid(kind, name, errors)

    def _changed(self, plural: str, event: str, obj: dict[str, Any]) -> None:
        if event == "DELETED":  # a deletion is a change too, with a resourceVersion of its own
            obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": self._next_rv()}}
        self.history.append((int(obj["metadata"]["resourceVersion"]), plural, event, obj))
        for listener in self.on_change:
            listener(plural, event, obj)


def _as_list_item(obj: dict[str, Any]) -> str:
    """An object as a list's item: kube-apiserver leaves out kind and apiVersion (the list has
    them)."""
    return json.dumps({k: v for k, v in obj.items() if k not in ("kind", "apiVersion")})


def label_namespace(obj: dict[str, Any]) -> None:
    """kube-apiserver labels every namespace with its own name (NamespaceDefaultLabelName)."""
    meta = obj["metadata"]
    meta["labels"] = {**(meta.get("labels") or {}), "kubernetes.io/metadata.name": meta["name"]}


def _semantic(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out.get("metadata", {}).pop("resourceVersion", None)
    out.get("metadata", {}).pop("managedFields", None)
    return out


def _details(kind: Kind, name: str) -> dict[str, Any]:
    details = {"name": name, "kind": kind.plural}
    if kind.group:
        details["group"] = kind.group
    return details


_CAUSES = {
    "Required value": "FieldValueRequired",
    "Unsupported value": "FieldValueNotSupported",
    "Not found": "FieldValueNotFound",
    "Forbidden": "FieldValueForbidden",
    "Duplicate value": "FieldValueDuplicate",
    "Too long": "FieldValueTooLong",
}


def invalid(kind: Kind, name: str, errors: list[str]) -> ApiError:
    return invalid_object(kind.kind, kind.group, name, errors)


def invalid_object(kind: str, group: str, name: str, errors: list[str]) -> ApiError:
    """kube-apiserver's 422: the message names the kind (RoleBinding.rbac.authorization.k8s.io),
    the details the group and Kind, and each cause its field, reason and what is wrong."""
    qualified = f"{kind}.{group}" if group else kind
    causes = []
    for error in errors:
        field, _, message = error.partition(": ")
        reason = next(
            (r for prefix, r in _CAUSES.items() if message.startswith(prefix)), "FieldValueInvalid"
        )
        causes.append({"reason": reason, "message": message, "field": field})
    details: dict[str, Any] = {"name": name, "group": group, "kind": kind, "causes": causes}
    details = {k: v for k, v in details.items() if v}
    return ApiError(
        422, "Invalid", f'{qualified} "{name}" is invalid: ' + ", ".join(errors), details
    )


def not_found(kind: Kind, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{kind.qualified} "{name}" not found', _details(kind, name))
