"""Field ownership (metadata.managedFields) and server-side apply, as kube-apiserver keeps them.

Every write records which manager set which fields: a create, update or patch as an `Update`
entry of its field manager (the `fieldManager` parameter, or the first word of the user agent),
an apply (`PATCH` with `application/apply-patch+yaml`) as an `Apply` entry. Apply then works as
on a real server: it sets the fields of the applied configuration, removes the fields the same
manager applied before and no longer does (unless another manager owns them too), and answers
409 Conflict when a field another manager owns would change value, unless `force=true` moves it.

Simplifications: a list is one field (kube-apiserver merges lists keyed by their merge key, e.g.
a ServiceAccount's secrets by name), and fieldsV1 has no `.` entries for maps.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from kubesim import schema
from kubesim.store import ApiError, Kind

Path = tuple[str, ...]
APPLY, UPDATE = "Apply", "Update"
# What no manager owns: identity, server-set metadata, and status (written by controllers).
_NOT_OWNED = {
    ("apiVersion",),
    ("kind",),
    ("status",),
    *(
        ("metadata", name)
        for name in (
            "name",
            "namespace",
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        )
    ),
}
_MISSING = object()


def manager_of(params: dict[str, str], user_agent: str) -> str:
    """The field manager of a request: its parameter, else the user agent's first word."""
    return params.get("fieldManager") or user_agent.split("/")[0] or "unknown"


@dataclass(frozen=True)
class Structure:
    """What fieldsV1 needs to know of a kind beyond its JSON: which fields are maps or optional
    structs (owned as a whole too: a `.` entry) and which structs are atomic (one field)."""

    dotted: frozenset[Path]
    atomic: frozenset[Path]


@cache
def structure(message: str | None) -> Structure:
    dotted: set[Path] = set()
    atomic: set[Path] = set()

    def walk(name: str, prefix: Path) -> None:
        for f in schema.messages()[name]:
            path = (*prefix, f.name)
            if f.map:
                dotted.add(path)
            elif f.repeated or f.type in schema.SCALARS:
                continue
            elif f.type in schema.ATOMIC:
                atomic.add(path)
            else:
                if not f.required:
                    dotted.add(path)
                if len(path) < 6:
                    walk(f.type, path)

    if message is None:  # a kind kubesim does not know field by field: its metadata, at least
        walk(f"{schema.META}.ObjectMeta", ("metadata",))
    else:
        walk(message, ())
    return Structure(frozenset(dotted), frozenset(atomic))


def structure_of(kind: Kind) -> Structure:
    return structure(schema.message_for(kind.group, kind.version, kind.kind))


def leaves(obj: dict[str, Any], shape: Structure, prefix: Path = ()) -> dict[Path, Any]:
    """Each field a manager can own, by path, with its value (maps and structs are walked;
    lists and atomic structs are one field)."""
    out: dict[Path, Any] = {}
    for key, value in obj.items():
        path = (*prefix, key)
        if path in _NOT_OWNED:
            continue
        if isinstance(value, dict) and path not in shape.atomic:
            out.update(leaves(value, shape, path))  # (an empty map or struct owns nothing)
        else:
            out[path] = value
    return out


def markers(obj: dict[str, Any], shape: Structure) -> set[Path]:
    """The maps and optional structs `obj` has, as owned-as-a-whole paths (`labels/.`)."""
    return {(*p, ".") for p in shape.dotted if isinstance(_get(obj, p), dict) and _get(obj, p)}


def to_fields_v1(paths: set[Path]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for path in sorted(paths):
        node = doc
        for key in path:
            node = node.setdefault("." if key == "." else f"f:{key}", {})
    return doc


def from_fields_v1(doc: dict[str, Any], prefix: Path = ()) -> set[Path]:
    paths: set[Path] = set()
    for key, child in doc.items():
        if key == ".":
            paths.add((*prefix, "."))
        elif key.startswith("f:"):
            path = (*prefix, key[2:])
            paths |= from_fields_v1(child, path) if child else {path}
    return paths


Owners = dict[tuple[str, str], set[Path]]


def _owners(obj: dict[str, Any]) -> tuple[Owners, dict[tuple[str, str], dict[str, Any]]]:
    """Who owns which paths, and each entry as it was (its time and subresource)."""
    owners: Owners = {}
    entries: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        key = (entry.get("manager", ""), entry.get("operation", UPDATE))
        owners[key] = from_fields_v1(entry.get("fieldsV1") or {})
        entries[key] = entry
    return owners, entries


def _set_entries(
    meta: dict[str, Any],
    owners: Owners,
    before: dict[tuple[str, str], dict[str, Any]],
    writer: tuple[str, str],
    kind: Kind,
    subresource: str = "",
) -> None:
    """metadata.managedFields from who owns what, in kube-apiserver's order (operation, time,
    manager); the writer's entry has the time of this write, the others keep theirs."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    entries = []
    for key, paths in owners.items():
        if not paths:
            continue
        old = before.get(key, {})
        entry = {
            "manager": key[0],
            "operation": key[1],
            "apiVersion": kind.api_version if key == writer else old.get("apiVersion", ""),
            "time": now if key == writer else old.get("time", now),
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields_v1(paths),
        }
        sub = subresource if key == writer else old.get("subresource", "")
        if sub:
            entry["subresource"] = sub
        entries.append(entry)
    entries.sort(key=lambda e: (e["operation"], e["time"], e["manager"]))
    if entries:
        meta["managedFields"] = entries
    else:
        meta.pop("managedFields", None)


def _get(obj: Any, path: Path) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return _MISSING
        obj = obj[key]
    return obj


def _set(obj: dict[str, Any], path: Path, value: Any) -> None:
    for key in path[:-1]:
        if not isinstance(obj.get(key), dict):
            obj[key] = {}
        obj = obj[key]
    obj[path[-1]] = copy.deepcopy(value)


def _remove(obj: dict[str, Any], path: Path) -> None:
    parents = []
    node: Any = obj
    for key in path[:-1]:
        if not isinstance(node, dict) or key not in node:
            return
        parents.append((node, key))
        node = node[key]
    if isinstance(node, dict):
        node.pop(path[-1], None)
    for parent, key in reversed(parents[1:]):  # empty maps left behind go too, not top-level ones
        if parent[key] == {}:
            del parent[key]


def record_update(
    old: dict[str, Any] | None,
    new: dict[str, Any],
    manager: str,
    kind: Kind,
    subresource: str = "",
) -> dict[str, Any]:
    """`new` with managedFields after a create, update or patch by `manager`."""
    new = copy.deepcopy(new)
    meta = new.setdefault("metadata", {})
    sent = meta.get("managedFields")
    kept = (old or {}).get("metadata", {}).get("managedFields")
    if old is not None and sent is not None and sent != kept:
        return new  # the client rewrote the managed fields itself (kubectl's CSA-to-SSA upgrade)
    owners, entries = _owners(old or {})
    shape = structure_of(kind)
    before = leaves(old or {}, shape)
    after = leaves(new, shape)
    changed = {p for p, v in after.items() if before.get(p, _MISSING) != v}
    changed |= markers(new, shape) - markers(old or {}, shape)  # maps this write made
    alive = set(after) | markers(new, shape)
    for key, paths in owners.items():
        paths.intersection_update(alive)  # removed fields are owned by no one
        if key != (manager, UPDATE):
            paths.difference_update(changed)
    owners.setdefault((manager, UPDATE), set()).update(changed)
    _set_entries(meta, owners, entries, (manager, UPDATE), kind, subresource)
    return new


def apply(
    live: dict[str, Any] | None,
    applied: dict[str, Any],
    manager: str,
    force: bool,
    kind: Kind,
) -> dict[str, Any]:
    """The object after `manager` applies `applied` to `live` (None: it is created)."""
    owners, entries = _owners(live or {})
    wanted = leaves(applied, structure_of(kind))
    conflicts = sorted(
        (path, other, operation)
        for (other, operation), paths in owners.items()
        if other != manager or operation != APPLY
        for path in paths & set(wanted)
        if _get(live, path) != wanted[path]
    )
    if conflicts and not force:
        raise _conflict_error(conflicts, kind)
    result = copy.deepcopy(live) if live is not None else {}
    previous = owners.get((manager, APPLY), set())
    others = set().union(*(p for k, p in owners.items() if k != (manager, APPLY)))
    for path in previous - set(wanted) - others:
        if path[-1] != ".":
            _remove(result, path)
    for path, value in wanted.items():
        _set(result, path, value)
    for key, paths in owners.items():
        if key != (manager, APPLY):
            paths.difference_update(c[0] for c in conflicts)
    owners[(manager, APPLY)] = set(wanted)
    result.setdefault("metadata", {})
    for name in ("name", "namespace"):
        if name in (applied.get("metadata") or {}):
            result["metadata"][name] = applied["metadata"][name]
    _set_entries(result["metadata"], owners, entries, (manager, APPLY), kind)
    return result


def _conflict_error(conflicts: list[tuple[Path, str, str]], kind: Kind) -> ApiError:
    """kube-apiserver's 409 for an apply that would change other managers' fields."""
    by_manager: dict[str, list[str]] = {}
    for path, other, operation in conflicts:
        who = f'"{other}"' + (f" using {kind.api_version}" if operation == UPDATE else "")
        by_manager.setdefault(who, []).append("." + ".".join(path))
    if len(conflicts) == 1:
        ((who, (field,)),) = by_manager.items()
        text = f"conflict with {who}: {field}"
    else:
        text = "\n".join(
            f"conflicts with {who}:\n" + "\n".join(f"- {f}" for f in fields)
            for who, fields in by_manager.items()
        )
    count = f"{len(conflicts)} conflict" + ("s" if len(conflicts) > 1 else "")
    return ApiError(
        409,
        "Conflict",
        f"Apply failed with {count}: {text}",
        {
            "causes": [
                {
                    "reason": "FieldManagerConflict",
                    "message": f'conflict with "{other}"',
                    "field": "." + ".".join(path),
                }
                for path, other, _operation in conflicts
            ]
        },
    )
