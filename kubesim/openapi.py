"""The OpenAPI v3 documents kube-apiserver serves at /openapi/v3, generated from what kubesim
serves: its kinds (paths and operations) and kubesim/schema.py (component schemas).

kubectl reads them for `apply`, `diff` and `create -f`: the PATCH operation of a kind, with its
`x-kubernetes-group-version-kind`, says that the server validates fields itself (the
`fieldValidation` parameter) and takes a strategic merge patch; the kind's schema, with the same
extension as a list, gives the merge keys of its lists. Kinds without a schema row get a schema
with no such extension, and kubectl computes their patch from the types built into it, as it does
against a server whose OpenAPI it cannot read.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from kubesim import schema
from kubesim.store import Kind

REF = "#/components/schemas/"
PATCH_TYPES = (
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)
_SCALARS: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "bool": {"type": "boolean"},
    "int64": {"type": "integer", "format": "int64"},
    "int32": {"type": "integer", "format": "int32"},
    "bytes": {"type": "string", "format": "byte"},
    "Time": {"type": "string", "format": "date-time"},
    "FieldsV1": {"type": "object"},
}
# The review and token kinds: served by create only.
REVIEWS: dict[tuple[str, str], tuple[tuple[str, str, bool], ...]] = {
    ("authorization.k8s.io", "v1"): (
        ("selfsubjectaccessreviews", "SelfSubjectAccessReview", False),
        ("selfsubjectrulesreviews", "SelfSubjectRulesReview", False),
        ("subjectaccessreviews", "SubjectAccessReview", False),
        ("localsubjectaccessreviews", "LocalSubjectAccessReview", True),
    ),
    ("authentication.k8s.io", "v1"): (
        ("selfsubjectreviews", "SelfSubjectReview", False),
        ("tokenreviews", "TokenReview", False),
    ),
}


def api_path(group: str, version: str) -> str:
    """The key of a group version in /openapi/v3: `api/v1`, `apis/rbac.authorization.k8s.io/v1`."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


def schema_name(group: str, version: str, kind: str) -> str:
    """The component name kube-apiserver uses: io.k8s.api.<group>.<version>.<Kind> for built-in
    groups, the reversed group for others (io.x-k8s.cluster.v1beta1.Cluster)."""
    found = schema.message_for(group, version, kind)
    if found:
        return found
    if not group:
        return f"io.k8s.api.core.{version}.{kind}"
    if group.endswith(".k8s.io") or "." not in group:
        return f"io.k8s.api.{group.split('.')[0]}.{version}.{kind}"
    return ".".join(reversed(group.split("."))) + f".{version}.{kind}"


def digest(document: dict[str, Any]) -> str:
    return hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest().upper()


def root(base_path: str, documents: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """/openapi/v3: where each group version's document is, with its hash (clients cache by it)."""
    return {
        "paths": {
            key: {"serverRelativeURL": f"{base_path}/openapi/v3/{key}?hash={digest(document)}"}
            for key, document in sorted(documents.items())
        }
    }


def documents(kinds: list[Kind], server_version: str) -> dict[str, dict[str, Any]]:
    """One OpenAPI v3 document per group version served, by its api_path."""
    by_gv: dict[tuple[str, str], list[Kind]] = {}
    for kind in kinds:
        by_gv.setdefault((kind.group, kind.version), []).append(kind)
    for gv in REVIEWS:
        by_gv.setdefault(gv, [])
    return {
        api_path(group, version): _document(group, version, served, server_version)
        for (group, version), served in by_gv.items()
    }


def _document(group: str, version: str, kinds: list[Kind], server_version: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    wanted: set[str] = {f"{schema.META}.Status", f"{schema.META}.DeleteOptions"}
    prefix = "/" + api_path(group, version)
    for kind in kinds:
        name = schema_name(group, version, kind.kind)
        wanted.add(name)
        paths.update(_kind_paths(prefix, kind, name))
        if kind.plural == "serviceaccounts":
            token = schema_name("authentication.k8s.io", "v1", "TokenRequest")
            wanted.add(token)
            gvk = {"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"}
            paths[f"{prefix}/namespaces/{{namespace}}/serviceaccounts/{{name}}/token"] = {
                "post": _operation("create", gvk, token, body=True),
                "parameters": [_path_param("name"), _path_param("namespace")],
            }
    for plural, kind_name, namespaced in REVIEWS.get((group, version), ()):
        name = schema_name(group, version, kind_name)
        wanted.add(name)
        at = f"{prefix}/namespaces/{{namespace}}/{plural}" if namespaced else f"{prefix}/{plural}"
        gvk = {"group": group, "version": version, "kind": kind_name}
        paths[at] = {"post": _operation("create", gvk, name, body=True)}
        if namespaced:
            paths[at]["parameters"] = [_path_param("namespace")]
    components = _components(wanted, kinds)
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": f"v{server_version}.0"},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "BearerToken": {
                    "type": "apiKey",
                    "description": "Bearer Token authentication",
                    "name": "authorization",
                    "in": "header",
                }
            },
        },
    }


def _kind_paths(prefix: str, kind: Kind, name: str) -> dict[str, Any]:
    gvk = {"group": kind.group, "version": kind.version, "kind": kind.kind}
    list_name = name + "List"
    strategic = not kind.group or kind.group.endswith(".k8s.io") or "." not in kind.group
    collection: dict[str, Any] = {
        "get": _operation("list", gvk, list_name),
        "post": _operation("create", gvk, name, body=True),
        "delete": _operation("deletecollection", gvk, f"{schema.META}.Status"),
    }
    item: dict[str, Any] = {
        "get": _operation("get", gvk, name),
        "put": _operation("update", gvk, name, body=True),
        "patch": _operation("patch", gvk, name, patch_types=PATCH_TYPES if strategic else None),
        "delete": _operation("delete", gvk, f"{schema.META}.Status"),
    }
    if not kind.namespaced:
        return {
            f"{prefix}/{kind.plural}": collection,
            f"{prefix}/{kind.plural}/{{name}}": {**item, "parameters": [_path_param("name")]},
        }
    scoped = f"{prefix}/namespaces/{{namespace}}/{kind.plural}"
    return {
        scoped: {**collection, "parameters": [_path_param("namespace")]},
        f"{scoped}/{{name}}": {
            **item,
            "parameters": [_path_param("name"), _path_param("namespace")],
        },
        f"{prefix}/{kind.plural}": {"get": _operation("list", gvk, list_name)},
    }


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, type_name: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": {"type": type_name, "uniqueItems": True}}


def _operation(
    action: str,
    gvk: dict[str, str],
    answer: str,
    body: bool = False,
    patch_types: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": f"{action}{gvk['kind']}",
        "responses": {
            "200": {"content": {"application/json": {"schema": {"$ref": REF + answer}}}},
            "401": {"description": "Unauthorized"},
        },
        "x-kubernetes-action": "post" if action == "create" else action,
        "x-kubernetes-group-version-kind": gvk,
    }
    parameters = []
    if action in ("create", "update", "patch", "delete", "deletecollection"):
        parameters.append(_query("dryRun"))
    if action in ("create", "update", "patch"):
        parameters += [_query("fieldManager"), _query("fieldValidation")]
    if action == "patch":
        parameters.append(_query("force", "boolean"))
        types = patch_types or PATCH_TYPES[:3]
        op["requestBody"] = {
            "content": {t: {"schema": {"$ref": REF + f"{schema.META}.Patch"}} for t in types},
            "required": True,
        }
    if action in ("list",):
        parameters += [_query(n) for n in ("labelSelector", "fieldSelector", "continue")]
        parameters += [_query("limit", "integer"), _query("watch", "boolean")]
    if body:
        op["requestBody"] = {
            "content": {"*/*": {"schema": {"$ref": REF + answer}}},
            "required": True,
        }
        op["responses"]["201"] = op["responses"]["200"]
    if parameters:
        op["parameters"] = parameters
    return op


def _components(wanted: set[str], kinds: list[Kind]) -> dict[str, dict[str, Any]]:
    """The schemas the paths name, and every message they refer to in turn."""
    out: dict[str, dict[str, Any]] = {
        f"{schema.META}.Patch": {"type": "object"},
        f"{schema.META}.Status": {
            "type": "object",
            "properties": {
                k: {"type": "integer" if k == "code" else "string"}
                for k in ("apiVersion", "kind", "status", "message", "reason", "code")
            },
        },
    }
    by_name = {schema_name(k.group, k.version, k.kind): k for k in kinds}
    messages = schema.messages()
    todo = sorted(wanted)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        fields = messages.get(name)
        kind = by_name.get(name)
        if fields is None:
            # A kind kubesim validates but does not describe field by field.
            out[name] = {
                "type": "object",
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"allOf": [{"$ref": REF + f"{schema.META}.ObjectMeta"}]},
                },
                "x-kubernetes-preserve-unknown-fields": True,
            }
            todo.append(f"{schema.META}.ObjectMeta")
        else:
            out[name] = _message_schema(fields, todo)
        gvk = _gvk_of(name, kind)
        if gvk and fields is not None:
            out[name]["properties"] = {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                **out[name]["properties"],
            }
            out[name]["x-kubernetes-group-version-kind"] = [gvk]
        if kind is not None:
            list_gvk = {"group": kind.group, "version": kind.version, "kind": kind.kind + "List"}
            out[name + "List"] = {
                "type": "object",
                "required": ["items"],
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"allOf": [{"$ref": REF + f"{schema.META}.ListMeta"}]},
                    "items": {"type": "array", "items": {"$ref": REF + name}},
                },
                "x-kubernetes-group-version-kind": [list_gvk],
            }
            todo.append(f"{schema.META}.ListMeta")
    return out


def _gvk_of(name: str, kind: Kind | None) -> dict[str, str] | None:
    if kind is not None:
        return {"group": kind.group, "version": kind.version, "kind": kind.kind}
    for (g, v, k), message in schema.KINDS.items():
        if message == name and g != "meta.k8s.io" and k != "DeleteOptions":
            return {"group": g, "version": v, "kind": k}
    return None


def _message_schema(fields: tuple[schema.Field, ...], todo: list[str]) -> dict[str, Any]:
    properties = {}
    for field in fields:
        value = _type_schema(field.type, todo)
        if field.map:
            value = {"type": "object", "additionalProperties": value}
        elif field.repeated:
            value = {"type": "array", "items": value}
            if field.merge_key == "merge":
                value.update(
                    {"x-kubernetes-list-type": "set", "x-kubernetes-patch-strategy": "merge"}
                )
            elif field.merge_key:
                value.update(
                    {
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": [field.merge_key],
                        "x-kubernetes-patch-merge-key": field.merge_key,
                        "x-kubernetes-patch-strategy": "merge",
                    }
                )
            else:
                value["x-kubernetes-list-type"] = "atomic"
        properties[field.name] = value
    out: dict[str, Any] = {"type": "object", "properties": properties}
    # (metadata, spec and status are required only in the sense that JSON always has them)
    required = [
        f.name for f in fields if f.required and f.name not in ("metadata", "spec", "status")
    ]
    if required:
        out["required"] = required
    return out


def _type_schema(type_name: str, todo: list[str]) -> dict[str, Any]:
    if type_name in _SCALARS:
        return dict(_SCALARS[type_name])
    if type_name.rsplit(".", 1)[-1] in schema.LIST_VALUED:
        return {"type": "array", "items": {"type": "string"}}
    todo.append(type_name)
    return {"allOf": [{"$ref": REF + type_name}]}
