"""kubesim's watches, read with the official client's watch helper as an informer reads them."""

from __future__ import annotations

import threading
import time

import pytest
from kubernetes import client, watch

from tests.clusters.conftest import official_client


def binding(name: str, team: str) -> client.V1RoleBinding:
    return client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name=name, labels={"team": team}),
        role_ref=client.V1RoleRef(
            api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="view"
        ),
        subjects=[
            client.RbacV1Subject(api_group="rbac.authorization.k8s.io", kind="Group", name=team)
        ],
    )


@pytest.fixture
def rbac(kube_cluster):
    sim = kube_cluster()
    sim.apply({"kind": "Namespace", "metadata": {"name": "team"}})
    return client.RbacAuthorizationV1Api(official_client(sim)), sim


def test_a_watch_from_a_lists_version_sees_each_later_change_of_what_it_selects(rbac):
    api, _sim = rbac
    api.create_namespaced_role_binding("team", binding("before", "a"))
    listed = api.list_namespaced_role_binding("team", label_selector="team=a")
    api.create_namespaced_role_binding("team", binding("other-team", "b"))
    api.create_namespaced_role_binding("team", binding("added", "a"))
    api.patch_namespaced_role_binding("added", "team", {"metadata": {"annotations": {"x": "1"}}})
    api.delete_namespaced_role_binding("added", "team")

    events = watch.Watch().stream(
        api.list_namespaced_role_binding,
        "team",
        label_selector="team=a",
        resource_version=listed.metadata.resource_version,
        timeout_seconds=1,
    )

    seen = [(e["type"], e["object"].metadata.name) for e in events]
    assert seen == [("ADDED", "added"), ("MODIFIED", "added"), ("DELETED", "added")]


def test_a_watch_without_a_version_starts_with_what_is_there(rbac):
    api, _sim = rbac
    api.create_namespaced_role_binding("team", binding("there", "a"))

    events = watch.Watch().stream(api.list_namespaced_role_binding, "team", timeout_seconds=1)

    assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "there")]


def test_a_watch_from_a_forgotten_version_is_410_expired(rbac):
    api, sim = rbac
    for i in range(sim.store.history.maxlen + 5):
        sim.apply({"kind": "Namespace", "metadata": {"name": f"ns-{i}"}})

    with pytest.raises(client.ApiException) as expired:
        api.list_namespaced_role_binding("team", watch=True, resource_version="2")

    assert expired.value.status == 410
    assert '"reason":"Expired"' in expired.value.body.replace(" ", "")


def test_an_open_watch_ends_when_its_cluster_is_removed(rbac, kubesim):
    api, sim = rbac
    ended = threading.Event()

    def consume() -> None:
        for _event in watch.Watch().stream(api.list_namespaced_role_binding, "team"):
            pass
        ended.set()

    threading.Thread(target=consume, daemon=True).start()
    time.sleep(0.5)

    kubesim.remove_cluster(sim.name)

    assert ended.wait(timeout=5)
