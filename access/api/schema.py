"""OpenAPI post-processing: every operation documents the errors it can answer with."""

from __future__ import annotations

from typing import Any

ERROR = {"$ref": "#/components/schemas/Error"}
ERRORS = {
    "400": "The input is wrong: `detail` (and `errors` or one list per field) says what to fix.",
    "401": "No token or session, or the token is not valid.",
    "403": "Logged in, but not allowed (operators only, or not yours to decide).",
    "404": "No such object, or one you may not see (or no such page of a list).",
}


def add_error_responses(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular documents only the success; add the error answers with their shape."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = {
        "type": "object",
        "description": "An error: `detail` in words; field errors as lists of messages.",
        "properties": {"detail": {"type": "string"}},
        "additionalProperties": True,
    }
    for _path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            for code, text in ERRORS.items():
                responses.setdefault(
                    code,
                    {"description": text, "content": {"application/json": {"schema": ERROR}}},
                )
            if method in ("post", "put", "patch"):
                responses.setdefault(
                    "415",
                    {
                        "description": "Send the body as JSON (application/json).",
                        "content": {"application/json": {"schema": ERROR}},
                    },
                )
            if method == "post":
                responses.setdefault(
                    "503",
                    {
                        "description": "The task queue is not answering.",
                        "content": {"application/json": {"schema": ERROR}},
                    },
                )
    return result
