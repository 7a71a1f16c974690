"""kubesim's reading of Kubernetes' protobuf envelope, on messages built here field by field
(kubectl's own bodies are in test_kubectl.py)."""

from __future__ import annotations

import pytest

from kubesim import codec
from kubesim.store import ApiError


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number: int, value: bytes | str | int) -> bytes:
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = field(1, api_version) + field(2, kind)
    return codec.MAGIC + field(1, type_meta) + field(2, raw)


def test_a_role_binding_reads_as_its_json():
    meta = (
        field(1, "devs")
        + field(3, "team")
        + field(11, field(1, "app") + field(2, "warden"))  # labels: map entries
        + field(8, b"")  # the zero creationTimestamp is an empty message
        + field(99, "a field kubesim does not know")
    )
    subject = field(1, "Group") + field(2, "rbac.authorization.k8s.io") + field(3, "devs")
    ref = field(1, "rbac.authorization.k8s.io") + field(2, "ClusterRole") + field(3, "view")
    body = envelope(
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        field(1, meta) + field(2, subject) + field(3, ref),
    )

    obj = codec.decode_body("application/vnd.kubernetes.protobuf", body)

    assert obj == {
        "kind": "RoleBinding",
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "metadata": {"name": "devs", "namespace": "team", "labels": {"app": "warden"}},
        "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "devs"}],
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "view",
        },
    }


def test_numbers_bytes_booleans_and_times_read_as_json_has_them():
    meta = field(1, "creds") + field(10, -1) + field(9, field(1, 1_800_000_000))
    secret = field(1, meta) + field(2, field(1, "key") + field(2, b"\x00\xff")) + field(5, 1)

    obj = codec.decode_protobuf(envelope("v1", "Secret", secret))

    assert obj["metadata"]["deletionGracePeriodSeconds"] == -1
    assert obj["metadata"]["deletionTimestamp"] == "2027-01-15T08:00:00Z"
    assert obj["data"] == {"key": "AP8="}  # []byte is base64 in JSON
    assert obj["immutable"] is True


def test_a_token_request_keeps_its_expiry_and_bound_object():
    spec = field(4, 3600) + field(3, field(1, "Secret") + field(3, "gen-1") + field(4, "u-1"))

    obj = codec.decode_protobuf(
        envelope("authentication.k8s.io/v1", "TokenRequest", field(2, spec))
    )

    assert obj["spec"] == {
        "expirationSeconds": 3600,
        "boundObjectRef": {"kind": "Secret", "name": "gen-1", "uid": "u-1"},
    }


def test_a_kind_kubesim_does_not_read_in_protobuf_is_415():
    with pytest.raises(ApiError) as refused:
        codec.decode_protobuf(envelope("apps/v1", "Deployment", field(1, field(1, "web"))))

    assert (refused.value.code, refused.value.reason) == (415, "UnsupportedMediaType")
    assert "application/json, application/yaml" in refused.value.message


@pytest.mark.parametrize(
    "body",
    [b"not protobuf", codec.MAGIC + b"\x0a\xff", codec.MAGIC + field(1, field(1, "v1"))[:-1]],
)
def test_a_malformed_body_is_400(body):
    with pytest.raises(ApiError) as refused:
        codec.decode_protobuf(body)

    assert (refused.value.code, refused.value.reason) == (400, "BadRequest")


def test_json_yaml_and_other_media_types():
    assert codec.decode_body("application/json; charset=utf-8", b'{"a": 1}') == {"a": 1}
    assert codec.decode_body("application/yaml", b"a: 1\n") == {"a": 1}
    with pytest.raises(ApiError) as refused:
        codec.decode_body("text/plain", b"a")
    assert refused.value.code == 415
    with pytest.raises(ApiError) as broken:
        codec.decode_body("application/json", b"{")
    assert broken.value.code == 400
