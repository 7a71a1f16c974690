"""PATCH bodies: JSON merge patch (RFC 7386), strategic merge (as merge for these kinds), JSON
patch (RFC 6902)."""

from __future__ import annotations

import copy
import json
from typing import Any

from kubesim.store import ApiError

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"  # server-side apply: kubesim/fields.py


def apply(current: dict[str, Any], body: bytes, content_type: str) -> dict[str, Any]:
    content_type = content_type.split(";")[0].strip()
    try:
        patch = json.loads(body or b"null")
    except ValueError as exc:
        raise ApiError(400, "BadRequest", f"error decoding patch: {exc}") from exc
    if content_type in (MERGE, STRATEGIC):
        if not isinstance(patch, dict):
            raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
        # RBAC kinds, namespaces, secrets and service accounts have no merge keys that differ
        # from replacement, so a strategic merge is a merge patch for them.
        return merge(copy.deepcopy(current), patch)
    if content_type == JSON_PATCH:
        if not isinstance(patch, list):
            raise ApiError(400, "BadRequest", "a JSON patch must be a list of operations")
        return json_patch(copy.deepcopy(current), patch)
    raise ApiError(415, "UnsupportedMediaType", "415: Unsupported Media Type", {})


def merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = merge(target.get(key), value)
    return target


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, "Invalid", f"the JSON pointer {path!r} must start with /")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str]) -> tuple[Any, str]:
    for part in parts[:-1]:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc, parts[-1]


def json_patch(doc: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    for op in operations:
        try:
            kind, parts = op["op"], _pointer(op["path"])
            if kind in ("add", "replace", "test"):
                value = copy.deepcopy(op["value"])
            parent, last = _parent(doc, parts)
            if kind == "add":
                if isinstance(parent, list):
                    parent.insert(len(parent) if last == "-" else int(last), value)
                else:
                    parent[last] = value
            elif kind == "remove":
                del parent[int(last) if isinstance(parent, list) else last]
            elif kind == "replace":
                index = int(last) if isinstance(parent, list) else last
                parent[index]  # must exist
                parent[index] = value
            elif kind == "test":
                actual = parent[int(last) if isinstance(parent, list) else last]
                if actual != value:
                    raise ApiError(422, "Invalid", f"the test operation on {op['path']} failed")
            elif kind in ("move", "copy"):
                source_parent, source_last = _parent(doc, _pointer(op["from"]))
                key = int(source_last) if isinstance(source_parent, list) else source_last
                value = copy.deepcopy(source_parent[key])
                if kind == "move":
                    del source_parent[key]
                parent, last = _parent(doc, parts)
                if isinstance(parent, list):
                    parent.insert(len(parent) if last == "-" else int(last), value)
                else:
                    parent[last] = value
            else:
                raise ApiError(422, "Invalid", f"unknown JSON patch operation {kind!r}")
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise ApiError(422, "Invalid", f"the JSON patch could not be applied: {exc!r}") from exc
    return doc
