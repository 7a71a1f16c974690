"""The credential check: can Warden manage RBAC on an API server, and which cluster is it."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import Q

from clusters import k8s
from clusters.choices import ClusterState
from clusters.k8s import Endpoint, KubeError, Unreachable
from clusters.models import Cluster

# What Warden must be allowed to do on a cluster it manages: (verb, resource). `bind` and
# `escalate` let it reference and write roles it does not itself hold (RBAC escalation rules).
REQUIRED_ACCESS = [
    (verb, resource)
    for resource in ("clusterroles", "clusterrolebindings", "rolebindings")
    for verb in ("list", "get", "create", "update", "delete")
] + [("list", "namespaces"), ("bind", "clusterroles"), ("escalate", "clusterroles")]


def check_access(endpoint: Endpoint) -> list[str]:
    """Problems that stop Warden from managing RBAC there, each saying what to fix; [] if none."""
    client = k8s.KubeClient(endpoint, max_attempts=1)
    try:
        client.version()
        missing = [
            f"{verb} {resource}"
            for verb, resource in REQUIRED_ACCESS
            if not client.self_subject_access_review(verb, resource, _api_group(resource))
        ]
    except Unreachable as exc:
        return [exc.message]
    except KubeError as exc:
        if exc.status == 401:
            return ["The cluster does not accept this token (401): paste a current token"]
        return [f"The cluster answered {exc}"]
    finally:
        client.close()
    if missing:
        return [
            "Warden's credentials may not " + ", ".join(missing) + ": bind them to the "
            "warden-manager ClusterRole (see docs/deploying.md, 'Least privilege on managed "
            "clusters')"
        ]
    return []


def read_identity(endpoint: Endpoint) -> str:
    """The cluster's identity (its kube-system namespace's uid); "" when it cannot be read."""
    client = k8s.KubeClient(endpoint, max_attempts=1)
    try:
        return client.cluster_identity()
    except KubeError:
        return ""
    finally:
        client.close()


def registered_as(
    identity: str, api_url: str = "", *, other_than: int | None = None
) -> Cluster | None:
    """The live registration of this cluster, if there is one (besides `other_than`): the
    same identity, or the same API URL."""
    url = api_url.rstrip("/")
    same = Q(api_url__in=[url, url + "/"]) if url else Q(pk__in=[])
    if identity:
        same |= Q(identity=identity)
    others = Cluster.objects.exclude(state=ClusterState.RETIRED).filter(same)
    if other_than is not None:
        others = others.exclude(pk=other_than)
    return others.order_by("pk").first()


def refuse_second_registration(identity: str, api_url: str, *, other_than: int | None) -> None:
    """A ValidationError naming the cluster's first registration, if it has one."""
    first = registered_as(identity, api_url, other_than=other_than)
    if first is not None:
        raise ValidationError(
            f"This API server is already registered as {first.name}: two registrations of one "
            f"cluster would undo each other's bindings. Edit {first.name} instead, or retire it "
            "first."
        )


def _api_group(resource: str) -> str:
    return "" if resource == "namespaces" else "rbac.authorization.k8s.io"
