"""Server-side printing: the meta.k8s.io/v1 Table kube-apiserver answers when a client accepts one
(`kubectl get` without `-o` sends `Accept: application/json;as=Table;v=v1;g=meta.k8s.io, ...`),
with kube-apiserver's columns for the kinds kubesim serves and Name/Age for custom resources.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

Cells = Callable[[dict[str, Any]], list[Any]]
TABLE_MEDIA = "as=table"


def wants_table(accept: str) -> bool:
    """Whether the client asks for a Table (the first media type it names that kubesim serves)."""
    for media in accept.lower().replace(" ", "").split(","):
        if TABLE_MEDIA in media.split(";") and "g=meta.k8s.io" in media:
            return "v=v1" in media.split(";")
        if media.split(";")[0] in ("application/json", "*/*"):
            return False
    return False


def age(timestamp: str, now: datetime | None = None) -> str:
    """How long ago, as kubectl and kube-apiserver print it (k8s.io/apimachinery's HumanDuration)."""
    if not timestamp:
        return "<unknown>"
    then = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    if seconds < -1:
        return "<invalid>"
    seconds = max(seconds, 0)
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 192:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 730:
        return f"{days}d"
    years = days // 365
    if years < 8:
        return f"{years}y{days % 365}d" if days % 365 else f"{years}y"
    return f"{years}y"


def _subjects(kind: str) -> Cells:
    def names(obj: dict[str, Any]) -> list[Any]:
        found = []
        for subject in obj.get("subjects") or []:
            if subject.get("kind") == kind:
                name = subject.get("name", "")
                if kind == "ServiceAccount":
                    name = f"{subject.get('namespace', '')}/{name}"
                found.append(name)
        return [", ".join(found)]

    return names


def _binding(obj: dict[str, Any]) -> list[Any]:
    ref = obj.get("roleRef") or {}
    return [f"{ref.get('kind', '')}/{ref.get('name', '')}", age(_created(obj))]


def _created(obj: dict[str, Any]) -> str:
    return str(obj["metadata"].get("creationTimestamp") or "")


# kind -> (columns after Name: (name, type, priority), the cells after the name)
_BINDING_COLUMNS = [
    ("Role", "string", 0),
    ("Age", "string", 0),
    ("Users", "string", 1),
    ("Groups", "string", 1),
    ("ServiceAccounts", "string", 1),
]
COLUMNS: dict[str, tuple[list[tuple[str, str, int]], Cells]] = {
    "Namespace": (
        [("Status", "string", 0), ("Age", "string", 0)],
        lambda o: [(o.get("status") or {}).get("phase", ""), age(_created(o))],
    ),
    "ServiceAccount": (
        [("Secrets", "string", 0), ("Age", "string", 0)],
        lambda o: [len(o.get("secrets") or []), age(_created(o))],
    ),
    "Secret": (
        [("Type", "string", 0), ("Data", "string", 0), ("Age", "string", 0)],
        lambda o: [
            o.get("type", ""),
            len(o.get("data") or {}) + len(o.get("stringData") or {}),
            age(_created(o)),
        ],
    ),
    "ConfigMap": (
        [("Data", "string", 0), ("Age", "string", 0)],
        lambda o: [len(o.get("data") or {}) + len(o.get("binaryData") or {}), age(_created(o))],
    ),
    "Role": ([("Created At", "date", 0)], lambda o: [_created(o)]),
    "ClusterRole": ([("Created At", "date", 0)], lambda o: [_created(o)]),
    "RoleBinding": (
        _BINDING_COLUMNS,
        lambda o: [
            *_binding(o),
            *_subjects("User")(o),
            *_subjects("Group")(o),
            *_subjects("ServiceAccount")(o),
        ],
    ),
}
COLUMNS["ClusterRoleBinding"] = COLUMNS["RoleBinding"]
_DEFAULT: tuple[list[tuple[str, str, int]], Cells] = (
    [("Age", "date", 0)],
    lambda o: [age(_created(o))],
)


def table(
    kind: str,
    objects: list[dict[str, Any]],
    list_meta: dict[str, Any],
    include_object: str = "Metadata",
    with_columns: bool = True,
) -> dict[str, Any]:
    columns, cells = COLUMNS.get(kind, _DEFAULT)
    out: dict[str, Any] = {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": [
            {
                "name": name,
                "type": type_name,
                "format": "name" if name == "Name" else "",
                "description": "",
                "priority": priority,
            }
            for name, type_name, priority in [("Name", "string", 0), *columns]
        ]
        if with_columns
        else [],
        "rows": [],
    }
    for obj in objects:
        row: dict[str, Any] = {"cells": [obj["metadata"].get("name", ""), *cells(obj)]}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        out["rows"].append(row)
    return out
