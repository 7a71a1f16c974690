"""Reading a pasted or uploaded kubeconfig: the API URL, CA and token of one context.

Only what Warden can use unattended is accepted: a bearer token (no exec plugins, no client
certificates on disk). Each error says what in the file to fix.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import yaml

from core import yamltext


class KubeconfigError(ValueError):
    """The kubeconfig cannot be used; the message names the part to fix."""


@dataclass(frozen=True)
class ClusterAccess:
    context: str
    cluster_name: str
    api_url: str
    ca_pem: str
    token: str
    insecure: bool = False


def parse_kubeconfig(text: str, context: str = "") -> ClusterAccess:
    try:
        doc = yamltext.safe_load(text)
    except yamltext.NotValidYAML as exc:
        raise KubeconfigError(f"The kubeconfig is {exc}") from None
    if not isinstance(doc, dict) or doc.get("kind", "Config") != "Config":
        raise KubeconfigError("This is not a kubeconfig (expected `kind: Config`)")
    name = context or doc.get("current-context") or ""
    contexts = {str(c.get("name")): c.get("context") or {} for c in _list(doc, "contexts")}
    if not name:
        if len(contexts) != 1:
            raise KubeconfigError(
                "The kubeconfig has no current-context; name one of: " + ", ".join(sorted(contexts))
            )
        name = next(iter(contexts))
    if name not in contexts:
        raise KubeconfigError(f"The kubeconfig has no context {name!r}")
    ctx = contexts[name]
    cluster = _named(doc, "clusters", ctx.get("cluster"), "cluster")
    user = _named(doc, "users", ctx.get("user"), "user")
    api_url = str(cluster.get("server") or "")
    if not api_url.startswith(("https://", "http://")):
        raise KubeconfigError(f"Cluster {ctx.get('cluster')!r} has no https:// server URL")
    ca_pem = _ca(cluster)
    token = _token(user, str(ctx.get("user")))
    return ClusterAccess(
        context=name,
        cluster_name=str(ctx.get("cluster")),
        api_url=api_url,
        ca_pem=ca_pem,
        token=token,
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
    )


def _list(doc: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = doc.get(key) or []
    if not isinstance(value, list):
        raise KubeconfigError(f"`{key}` must be a list")
    return [item for item in value if isinstance(item, dict)]


def _named(doc: dict[str, Any], key: str, name: Any, inner: str) -> dict[str, Any]:
    for item in _list(doc, key):
        if item.get("name") == name:
            return dict(item.get(inner) or {})
    raise KubeconfigError(f"The context refers to {inner} {name!r}, which is not in `{key}`")


def _ca(cluster: dict[str, Any]) -> str:
    data = cluster.get("certificate-authority-data")
    if data:
        try:
            pem = base64.b64decode(data, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise KubeconfigError("certificate-authority-data is not base64 of a PEM CA") from exc
        if "BEGIN CERTIFICATE" not in pem:
            raise KubeconfigError("certificate-authority-data does not hold a PEM certificate")
        return pem
    if cluster.get("certificate-authority"):
        raise KubeconfigError(
            "The CA is a file path (certificate-authority); embed it as "
            "certificate-authority-data (kubectl config view --raw --flatten)"
        )
    return ""


def _token(user: dict[str, Any], name: str) -> str:
    if user.get("token"):
        return str(user["token"])
    if user.get("exec") or user.get("auth-provider"):
        raise KubeconfigError(
            f"User {name!r} logs in with a plugin; Warden needs a service-account token "
            "(kubectl create token ... ) in `token`"
        )
    if user.get("client-certificate-data") or user.get("client-certificate"):
        raise KubeconfigError(
            f"User {name!r} uses a client certificate; Warden needs a bearer token in `token`"
        )
    raise KubeconfigError(f"User {name!r} has no token")


def list_contexts(text: str) -> tuple[list[str], str]:
    """The context names of a kubeconfig and its current-context ("" if none)."""
    try:
        doc = yamltext.safe_load(text)
    except yamltext.NotValidYAML as exc:
        raise KubeconfigError(f"The kubeconfig is {exc}") from None
    if not isinstance(doc, dict) or doc.get("kind", "Config") != "Config":
        raise KubeconfigError("This is not a kubeconfig (expected `kind: Config`)")
    names = [str(c["name"]) for c in _list(doc, "contexts") if c.get("name")]
    if not names:
        raise KubeconfigError("The kubeconfig has no contexts")
    return names, str(doc.get("current-context") or "")


@dataclass(frozen=True)
class KubeconfigEntry:
    """One cluster of a kubeconfig Warden hands out: where it is and the token to use there."""

    cluster: str
    server: str
    ca_pem: str
    token: str


def build_kubeconfig(user: str, entries: list[KubeconfigEntry], namespace: str = "") -> str:
    """A ready kubeconfig with one context per cluster (the first is current)."""
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "current-context": entries[0].cluster if entries else "",
        "clusters": [],
        "users": [],
        "contexts": [],
    }
    for entry in entries:
        cluster: dict[str, Any] = {"server": entry.server}
        if entry.ca_pem:
            cluster["certificate-authority-data"] = base64.b64encode(entry.ca_pem.encode()).decode()
        user_name = f"{user}@{entry.cluster}"
        doc["clusters"].append({"name": entry.cluster, "cluster": cluster})
        doc["users"].append({"name": user_name, "user": {"token": entry.token}})
        context = {"cluster": entry.cluster, "user": user_name}
        if namespace:
            context["namespace"] = namespace
        doc["contexts"].append({"name": entry.cluster, "context": context})
    # libyaml's emitter when there is one: the pure-Python one costs more than a rotation's
    # API calls (measured with bench/rotation.py).
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return str(yaml.dump(doc, Dumper=dumper, sort_keys=False))
