"""Discovery: what a cluster says about itself (/version, /api, /apis, each group version's
resources, /openapi/v3), as kube-apiserver answers it."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from kubesim import openapi
from kubesim.store import ApiError, Store

# The kinds kubesim serves that `kubectl get all` lists (kube-apiserver's "all" category).
IN_CATEGORY_ALL = ("pods", "services", "deployments", "jobs")


def serves(store: Store, group: str, version: str) -> bool:
    """Whether the group version has an API here (else Go's mux answers a 404 page)."""
    if (group, version) in openapi.REVIEWS:
        return True
    return any(k.group == group and k.version == version for k in store.kinds.values())


def non_resource(store: Store, version: str, server_url: str, path: str) -> dict[str, Any]:
    """/version, /api, /apis, health and /openapi/v3 of a cluster of that version, there."""
    path = "/" + path.strip("/")
    major, minor = version.split(".")[:2]
    if path == "/version":
        emulation = {}
        if int(minor) >= 33:  # (the emulation fields came with 1.33)
            emulation = {
                "emulationMajor": major,
                "emulationMinor": minor,
                "minCompatibilityMajor": major,
                "minCompatibilityMinor": str(int(minor) - 1),
            }
        return {
            "major": major,
            "minor": minor,
            **emulation,
            "gitVersion": f"v{major}.{minor}.0-kubesim",
            "platform": "linux/amd64",
            "goVersion": "go1.22",
            "compiler": "gc",
            "buildDate": "2026-01-01T00:00:00Z",
            "gitCommit": "kubesim",
            "gitTreeState": "clean",
        }
    if path == "/api":
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}
            ],
        }
    if path == "/apis":
        groups: dict[str, set[str]] = {}
        for kind in store.kinds.values():
            if kind.group:
                groups.setdefault(kind.group, set()).add(kind.version)
        for extra in ("authorization.k8s.io", "authentication.k8s.io"):
            groups.setdefault(extra, set()).add("v1")
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {
                    "name": g,
                    "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in sorted(vs)],
                    "preferredVersion": {
                        "groupVersion": f"{g}/{sorted(vs)[-1]}",
                        "version": sorted(vs)[-1],
                    },
                }
                for g, vs in sorted(groups.items())
            ],
        }
    if path in ("/healthz", "/livez", "/readyz"):
        return {"status": "ok"}
    if path == "/openapi/v3" or path.startswith("/openapi/v3/"):
        docs = openapi.documents(list(store.kinds.values()), f"{major}.{minor}")
        if path == "/openapi/v3":
            return openapi.root(urlsplit(server_url).path, docs)
        document = docs.get(path.removeprefix("/openapi/v3/"))
        if document is not None:
            return document
    raise ApiError(404, "NotFound", "the server could not find the requested resource")


def resource_list(store: Store, group: str, version: str) -> dict[str, Any]:
    """A group version's APIResourceList."""
    gv = f"{group}/{version}" if group else version
    resources = []
    verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
    for kind in store.kinds.values():
        if kind.group == group and kind.version == version:
            resource = {
                "name": kind.plural,
                "singularName": kind.kind.lower(),
                "namespaced": kind.namespaced,
                "kind": kind.kind,
                "verbs": verbs,
                "shortNames": list(kind.short_names),
            }
            if kind.plural in IN_CATEGORY_ALL:
                resource["categories"] = ["all"]  # kubectl get all
            resources.append(resource)
            if kind.plural == "serviceaccounts":
                resources.append(
                    {
                        "name": "serviceaccounts/token",
                        "singularName": "",
                        "namespaced": True,
                        "group": "authentication.k8s.io",
                        "version": "v1",
                        "kind": "TokenRequest",
                        "verbs": ["create"],
                    }
                )
    if group == "authorization.k8s.io":
        resources = [
            {
                "name": n,
                "singularName": "",
                "namespaced": n == "localsubjectaccessreviews",
                "kind": k,
                "verbs": ["create"],
            }
            for n, k in (
                ("selfsubjectaccessreviews", "SelfSubjectAccessReview"),
                ("selfsubjectrulesreviews", "SelfSubjectRulesReview"),
                ("subjectaccessreviews", "SubjectAccessReview"),
                ("localsubjectaccessreviews", "LocalSubjectAccessReview"),
            )
        ]
    if group == "authentication.k8s.io":
        resources = [
            {
                "name": name,
                "singularName": "",
                "namespaced": False,
                "kind": kind,
                "verbs": ["create"],
            }
            for name, kind in (
                ("selfsubjectreviews", "SelfSubjectReview"),
                ("tokenreviews", "TokenReview"),
            )
        ]
    if not resources:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    answer = {"kind": "APIResourceList", "groupVersion": gv, "resources": resources}
    if group:  # (kube-apiserver's core list has no apiVersion)
        answer["apiVersion"] = "v1"
    return answer
