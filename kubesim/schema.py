"""What kubesim knows of the built-in types field by field: each message's protobuf field numbers,
JSON names and types, as in Kubernetes' generated.proto files (k8s.io/api, k8s.io/apimachinery).

One table drives both the protobuf decoder (kubesim/protobuf.py: kubectl sends built-in kinds as
`application/vnd.kubernetes.protobuf`) and the OpenAPI v3 documents (kubesim/openapi.py: what
`kubectl apply` reads). Kinds kubesim serves without a row here (Pods, Services, Deployments,
Jobs, PodDisruptionBudgets, NetworkPolicies, custom resources) are served as JSON only.

A message is written as `jsonName:number[:type]` entries. The type is `string` when left out; a
scalar (`string`, `bool`, `int64`, `int32`, `bytes`), `Time`, `FieldsV1`, or another message (a
bare name is in the same package, `meta.X` is apimachinery's meta/v1); `[T]` is a list and `{T}`
a map from string to T. A list may end in `/key` (strategic merge by that key) or `/merge` (a
list of scalars merged as a set). A `!` after the name marks a required field (kube-apiserver
writes it even when empty; other empty fields are left out, as `omitempty` does).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

META = "io.k8s.apimachinery.pkg.apis.meta.v1"
PACKAGES = {
    "meta": META,
    "core": "io.k8s.api.core.v1",
    "rbac": "io.k8s.api.rbac.v1",
    "authn": "io.k8s.api.authentication.v1",
    "authz": "io.k8s.api.authorization.v1",
}
_OBJECT = "metadata!:1:meta.ObjectMeta"
_REVIEW = f"{_OBJECT} spec!:2:SubjectAccessReviewSpec status:3:SubjectAccessReviewStatus"

_MESSAGES: dict[str, dict[str, str]] = {
    "meta": {
        "ObjectMeta": "name:1 generateName:2 namespace:3 selfLink:4 uid:5 resourceVersion:6 "
        "generation:7:int64 creationTimestamp:8:Time deletionTimestamp:9:Time "
        "deletionGracePeriodSeconds:10:int64 labels:11:{string} annotations:12:{string} "
        "ownerReferences:13:[OwnerReference]/uid finalizers:14:[string]/merge "
        "managedFields:17:[ManagedFieldsEntry]",
        "OwnerReference": "apiVersion!:5 kind!:1 name!:3 uid!:4 controller:6:bool "
        "blockOwnerDeletion:7:bool",
        "ManagedFieldsEntry": "manager:1 operation:2 apiVersion:3 time:4:Time fieldsType:6 "
        "fieldsV1:7:FieldsV1 subresource:8",
        "ListMeta": "selfLink:1 resourceVersion:2 continue:3 remainingItemCount:4:int64",
        "LabelSelector": "matchLabels:1:{string} matchExpressions:2:[LabelSelectorRequirement]",
        "LabelSelectorRequirement": "key!:1 operator!:2 values:3:[string]",
        "Preconditions": "uid:1 resourceVersion:2",
        "DeleteOptions": "gracePeriodSeconds:1:int64 "
        "preconditions:2:Preconditions orphanDependents:3:bool propagationPolicy:4 "
        "dryRun:5:[string]",
    },
    "core": {
        "Namespace": f"{_OBJECT} spec!:2:NamespaceSpec status!:3:NamespaceStatus",
        "NamespaceSpec": "finalizers:1:[string]",
        "NamespaceStatus": "phase:1 conditions:2:[NamespaceCondition]/type",
        "NamespaceCondition": "type!:1 status!:2 lastTransitionTime:4:Time reason:5 message:6",
        "ServiceAccount": f"{_OBJECT} secrets:2:[ObjectReference]/name "
        "imagePullSecrets:3:[LocalObjectReference] automountServiceAccountToken:4:bool",
        "ObjectReference": "kind:1 namespace:2 name:3 uid:4 apiVersion:5 resourceVersion:6 "
        "fieldPath:7",
        "LocalObjectReference": "name:1",
        "Secret": f"{_OBJECT} immutable:5:bool data:2:{{bytes}} stringData:4:{{string}} type:3",
        "ConfigMap": f"{_OBJECT} immutable:4:bool data:2:{{string}} binaryData:3:{{bytes}}",
    },
    "rbac": {
        "Role": f"{_OBJECT} rules:2:[PolicyRule]",
        "ClusterRole": f"{_OBJECT} rules:2:[PolicyRule] aggregationRule:3:AggregationRule",
        "RoleBinding": f"{_OBJECT} subjects:2:[Subject] roleRef!:3:RoleRef",
        "ClusterRoleBinding": f"{_OBJECT} subjects:2:[Subject] roleRef!:3:RoleRef",
        "Subject": "kind!:1 apiGroup:2 name!:3 namespace:4",
        "RoleRef": "apiGroup!:1 kind!:2 name!:3",
        "PolicyRule": "verbs!:1:[string] apiGroups:2:[string] resources:3:[string] "
        "resourceNames:4:[string] nonResourceURLs:5:[string]",
        "AggregationRule": "clusterRoleSelectors:1:[meta.LabelSelector]",
    },
    "authn": {
        "TokenRequest": f"{_OBJECT} spec!:2:TokenRequestSpec status:3:TokenRequestStatus",
        "TokenRequestSpec": "audiences!:1:[string] expirationSeconds:4:int64 "
        "boundObjectRef:3:BoundObjectReference",
        "TokenRequestStatus": "token!:1 expirationTimestamp!:2:Time",
        "BoundObjectReference": "kind:1 apiVersion:2 name:3 uid:4",
        "TokenReview": f"{_OBJECT} spec!:2:TokenReviewSpec status:3:TokenReviewStatus",
        "TokenReviewSpec": "token:1 audiences:2:[string]",
        "TokenReviewStatus": "authenticated:1:bool user:2:UserInfo audiences:4:[string] error:3",
        "UserInfo": "username:1 uid:2 groups:3:[string] extra:4:{ExtraValue}",
        "SelfSubjectReview": f"{_OBJECT} status:2:SelfSubjectReviewStatus",
        "SelfSubjectReviewStatus": "userInfo:1:UserInfo",
    },
    "authz": {
        "SelfSubjectAccessReview": f"{_OBJECT} spec!:2:SelfSubjectAccessReviewSpec "
        "status:3:SubjectAccessReviewStatus",
        "SelfSubjectAccessReviewSpec": "resourceAttributes:1:ResourceAttributes "
        "nonResourceAttributes:2:NonResourceAttributes",
        "SubjectAccessReview": _REVIEW,
        "LocalSubjectAccessReview": _REVIEW,
        "SubjectAccessReviewSpec": "resourceAttributes:1:ResourceAttributes "
        "nonResourceAttributes:2:NonResourceAttributes user:3 groups:4:[string] "
        "extra:5:{ExtraValue} uid:6",
        "SubjectAccessReviewStatus": "allowed!:1:bool denied:4:bool reason:2 evaluationError:3",
        "ResourceAttributes": "namespace:1 verb:2 group:3 version:4 resource:5 subresource:6 "
        "name:7",
        "NonResourceAttributes": "path:1 verb:2",
        "SelfSubjectRulesReview": f"{_OBJECT} spec!:2:SelfSubjectRulesReviewSpec "
        "status:3:SubjectRulesReviewStatus",
        "SelfSubjectRulesReviewSpec": "namespace:1",
        "SubjectRulesReviewStatus": "resourceRules!:1:[ResourceRule] "
        "nonResourceRules!:2:[NonResourceRule] incomplete!:3:bool evaluationError:4",
        "ResourceRule": "verbs!:1:[string] apiGroups:2:[string] resources:3:[string] "
        "resourceNames:4:[string]",
        "NonResourceRule": "verbs!:1:[string] nonResourceURLs:2:[string]",
    },
}
# Both authentication and authorization have an ExtraValue: a list of strings in JSON.
_MESSAGES["authn"]["ExtraValue"] = _MESSAGES["authz"]["ExtraValue"] = "items:1:[string]"
SCALARS = ("string", "bool", "int64", "int32", "bytes", "Time", "FieldsV1")
# Structs that are one field for server-side apply (+structType=atomic).
ATOMIC = frozenset(
    {
        f"{PACKAGES['rbac']}.RoleRef",
        f"{PACKAGES['core']}.ObjectReference",
        f"{PACKAGES['core']}.LocalObjectReference",
        f"{PACKAGES['meta']}.OwnerReference",
    }
)
# Messages that are a plain list in JSON (their one repeated field is the value).
LIST_VALUED = ("ExtraValue",)

# (group, version, kind) -> the message of each kind that has a row above.
KINDS: dict[tuple[str, str, str], str] = {
    **{
        ("", "v1", k): f"{PACKAGES['core']}.{k}"
        for k in ("Namespace", "ServiceAccount", "Secret", "ConfigMap")
    },
    **{
        ("rbac.authorization.k8s.io", "v1", k): f"{PACKAGES['rbac']}.{k}"
        for k in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
    },
    **{
        ("authentication.k8s.io", "v1", k): f"{PACKAGES['authn']}.{k}"
        for k in ("TokenRequest", "TokenReview", "SelfSubjectReview")
    },
    **{
        ("authorization.k8s.io", "v1", k): f"{PACKAGES['authz']}.{k}"
        for k in (
            "SelfSubjectAccessReview",
            "SubjectAccessReview",
            "LocalSubjectAccessReview",
            "SelfSubjectRulesReview",
        )
    },
    ("", "v1", "DeleteOptions"): f"{META}.DeleteOptions",
    ("meta.k8s.io", "v1", "DeleteOptions"): f"{META}.DeleteOptions",
}


@dataclass(frozen=True)
class Field:
    """One field of a message."""

    name: str
    number: int
    type: str  # a scalar or a message's full name
    repeated: bool = False
    map: bool = False
    required: bool = False
    merge_key: str = ""  # strategic merge: the key of a list of objects, or "merge" for scalars


def _resolve(type_name: str, package: str) -> str:
    if type_name in SCALARS:
        return type_name
    if "." in type_name:
        prefix, name = type_name.split(".", 1)
        return f"{PACKAGES[prefix]}.{name}"
    return f"{PACKAGES[package]}.{type_name}"


def _parse(package: str, text: str) -> tuple[Field, ...]:
    fields = []
    for entry in text.split():
        name, number, *rest = entry.split(":")
        type_text = rest[0] if rest else "string"
        merge_key = ""
        if "/" in type_text:
            type_text, merge_key = type_text.split("/")
        repeated, is_map = type_text.startswith("["), type_text.startswith("{")
        inner = type_text.strip("[]{}")
        fields.append(
            Field(
                name=name.rstrip("!"),
                number=int(number),
                type=_resolve(inner, package),
                repeated=repeated,
                map=is_map,
                required=name.endswith("!"),
                merge_key=merge_key,
            )
        )
    return tuple(fields)


@cache
def messages() -> dict[str, tuple[Field, ...]]:
    """Every message by its full (OpenAPI) name, e.g. io.k8s.api.rbac.v1.RoleBinding."""
    return {
        f"{PACKAGES[package]}.{name}": _parse(package, text)
        for package, table in _MESSAGES.items()
        for name, text in table.items()
    }


def message_for(group: str, version: str, kind: str) -> str | None:
    """The message of a kind kubesim knows field by field, or None."""
    return KINDS.get((group, version, kind))


def prune(message: str, obj: dict[str, Any], prefix: str = "") -> tuple[dict[str, Any], list[str]]:
    """`obj` without the fields its message does not have, and their paths (`spec.foo`,
    `subjects[0].foo`): what kube-apiserver drops, warns of, or refuses (fieldValidation)."""
    fields = {f.name: f for f in messages()[message]}
    kept: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in obj.items():
        path = f"{prefix}{key}"
        spec = fields.get(key)
        if spec is None:
            if not prefix and key in ("apiVersion", "kind"):
                kept[key] = value
            else:
                unknown.append(path)
            continue
        if spec.type in SCALARS or spec.type.rsplit(".", 1)[-1] in LIST_VALUED or spec.map:
            kept[key] = value
        elif spec.repeated and isinstance(value, list):
            items = []
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    item, more = prune(spec.type, item, f"{path}[{i}].")
                    unknown += more
                items.append(item)
            kept[key] = items
        elif isinstance(value, dict):
            kept[key], more = prune(spec.type, value, f"{path}.")
            unknown += more
        else:
            kept[key] = value
    return kept, unknown
