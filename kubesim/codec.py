"""Request bodies in the media types kube-apiserver accepts: JSON, YAML and Kubernetes' protobuf.

kubectl (client-go's typed clients) sends the built-in kinds as `application/vnd.kubernetes.protobuf`
and does not fall back to JSON on a 415 (only a CBOR request does), so a server that serves those
kinds must read protobuf. The envelope is the magic bytes `k8s\\x00` and a runtime.Unknown message
(typeMeta = 1, raw = 2, contentEncoding = 3, contentType = 4) whose `raw` is the object's own
message; kubesim/schema.py has the field numbers of the messages kubesim decodes. Answers stay
JSON: clients that send protobuf accept JSON too (`Accept: application/vnd.kubernetes.protobuf,
application/json`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import yaml

from kubesim import schema
from kubesim.store import ApiError

JSON = "application/json"
YAML = "application/yaml"
PROTOBUF = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"
ACCEPTED = (JSON, YAML, PROTOBUF)

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


def media_type(content_type: str) -> str:
    return content_type.split(";")[0].strip().lower()


def unsupported(accepted: tuple[str, ...] = ACCEPTED) -> ApiError:
    """kube-apiserver's answer to a body in a media type it does not read."""
    return ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(accepted),
    )


def decode_body(content_type: str, body: bytes) -> dict[str, Any]:
    """The object a create, update, review or delete request carries, as JSON would give it."""
    kind = media_type(content_type) or JSON
    if kind == PROTOBUF:
        return decode_protobuf(body)
    if kind not in (JSON, YAML):
        raise unsupported()
    try:
        value = json.loads(body or b"{}") if kind == JSON else yaml.safe_load(body or b"{}")
    except (ValueError, yaml.YAMLError) as exc:
        raise ApiError(
            400, "BadRequest", f"the body of the request was in an unknown format: {exc}"
        ) from exc
    if not isinstance(value, dict):
        raise ApiError(400, "BadRequest", "the body of the request must be an object")
    return value


# --- protobuf ---------------------------------------------------------------------------------


def decode_protobuf(body: bytes) -> dict[str, Any]:
    if not body.startswith(MAGIC):
        raise ApiError(
            400,
            "BadRequest",
            "provided object is not a Kubernetes protobuf message (no k8s prefix)",
        )
    try:
        envelope = _message_fields(body[len(MAGIC) :])
        type_meta = _message_fields(_last(envelope, 1, b""))
        api_version = _last(type_meta, 1, b"").decode()
        kind = _last(type_meta, 2, b"").decode()
        raw = _last(envelope, 2, b"")
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise ApiError(400, "BadRequest", f"the protobuf envelope is malformed: {exc}") from exc
    group, _, version = api_version.rpartition("/")
    message = schema.message_for(group, version, kind)
    if message is None:
        # kube-apiserver reads protobuf for every built-in kind; kubesim for those in its table.
        raise unsupported((JSON, YAML))
    try:
        decoded = decode_message(message, raw)
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise ApiError(
            400,
            "BadRequest",
            f'{kind} in version "{version}" cannot be handled as a {kind}: {exc}',
        ) from exc
    return {"kind": kind, "apiVersion": api_version, **decoded}


def decode_message(message: str, data: bytes) -> dict[str, Any]:
    """One message's fields by JSON name; unset and empty optional fields left out."""
    fields = {f.number: f for f in schema.messages()[message]}
    out: dict[str, Any] = {}
    for number, wire, value in _wire(data):
        spec = fields.get(number)
        if spec is None:
            continue  # an unknown field is dropped, as a protobuf decoder does
        if spec.map:
            entry = _message_fields(_as_bytes(value))
            key = _last(entry, 1, b"").decode()
            item = _last(entry, 2, None)
            out.setdefault(spec.name, {})[key] = _value(spec.type, _BYTES, item)
        elif spec.repeated:
            items = out.setdefault(spec.name, [])
            if wire == _BYTES and spec.type in ("int64", "int32", "bool"):
                items.extend(_packed(spec.type, _as_bytes(value)))
            else:
                items.append(_value(spec.type, wire, value))
        else:
            out[spec.name] = _value(spec.type, wire, value)
    required = {f.name for f in fields.values() if f.required}
    return {k: v for k, v in out.items() if k in required or v not in ("", 0, None, [], {})}


def _value(type_name: str, wire: int, value: int | bytes | None) -> Any:
    if type_name == "bool":
        return bool(value)
    if type_name in ("int64", "int32"):
        return _signed(int(value or 0), 64 if type_name == "int64" else 32)
    data = _as_bytes(value)
    if type_name == "string":
        return data.decode()
    if type_name == "bytes":
        return base64.b64encode(data).decode()  # []byte is base64 in JSON
    if type_name == "Time":
        seconds = _signed(int(_last(_message_fields(data), 1, 0)), 64) if data else 0
        if not data:
            return None  # the zero time is sent as an empty message
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if type_name == "FieldsV1":
        raw = _last(_message_fields(data), 1, b"")
        return json.loads(raw) if raw else {}
    decoded = decode_message(type_name, data)
    if type_name.rsplit(".", 1)[-1] in schema.LIST_VALUED:
        return decoded.get("items", [])
    return decoded


def _as_bytes(value: int | bytes | None) -> bytes:
    if value is None:
        return b""
    if isinstance(value, int):
        raise ValueError("expected a length-delimited field, got a varint")
    return value


def _signed(value: int, bits: int) -> int:
    value &= (1 << 64) - 1
    if bits == 32:
        value &= (1 << 32) - 1
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


def _packed(type_name: str, data: bytes) -> list[Any]:
    values, at = [], 0
    while at < len(data):
        value, at = _varint(data, at)
        values.append(bool(value) if type_name == "bool" else _signed(value, 64))
    return values


def _last(fields: dict[int, list[Any]], number: int, default: Any) -> Any:
    values = fields.get(number)
    return values[-1] if values else default


def _message_fields(data: bytes) -> dict[int, list[Any]]:
    fields: dict[int, list[Any]] = {}
    for number, _wire_type, value in _wire(data):
        fields.setdefault(number, []).append(value)
    return fields


def _varint(data: bytes, at: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if at >= len(data):
            raise ValueError("truncated varint")
        byte = data[at]
        at += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, at
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _wire(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each field of one message, in order."""
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == _VARINT:
            value, at = _varint(data, at)
        elif wire == _BYTES:
            length, at = _varint(data, at)
            if at + length > len(data):
                raise ValueError("truncated field")
            value, at = data[at : at + length], at + length
        elif wire == _FIXED64:
            value, at = int.from_bytes(data[at : at + 8], "little"), at + 8
        elif wire == _FIXED32:
            value, at = int.from_bytes(data[at : at + 4], "little"), at + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value
