"""The "Why forbidden?" page through the test client, against kubesim clusters over HTTPS."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
from bs4 import BeautifulSoup
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.urls import reverse
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from access.models import Grant, Person, Role, RoleDefinition
from clusters.models import Cluster
from clusters.services import reconcile_cluster

pytestmark = pytest.mark.django_db

LIST_PODS = (
    'Error from server (Forbidden): pods is forbidden: User "alice" cannot list resource "pods" '
    'in API group "" in the namespace "payments"'
)


@pytest.fixture(autouse=True)
def _no_cached_roles():
    cache.clear()


@pytest.fixture
def alice_client(client, people):
    """alice (in team payments) logged in."""
    user = get_user_model().objects.create_user("alice")
    Person.objects.filter(username="alice").update(user=user)
    client.force_login(user)
    return client


def ask(client, **params):
    return client.get(reverse("why-forbidden"), params)


def request_link(page: str) -> dict[str, list[str]]:
    start = page.index('id="request-link" href="') + len('id="request-link" href="')
    href = page[start : page.index('"', start)].replace("&amp;", "&")
    parts = urlsplit(href)
    assert parts.path == "/requests/new"
    return parse_qs(parts.query)


def forbidden_message_from(sim, user: str, namespace: str) -> str:
    """What kubesim (kube-apiserver's wording) answers when `user` lists pods."""
    token = sim.add_user(user)
    config = k8s_client.Configuration()
    config.host = sim.server_url
    config.api_key = {"BearerToken": token}
    config.api_key_prefix = {"BearerToken": "Bearer"}
    config.ca_cert_data = sim.ca_cert_pem.decode()
    api = k8s_client.CoreV1Api(k8s_client.ApiClient(config))
    with pytest.raises(ApiException) as refused:
        api.list_namespaced_pod(namespace)
    assert refused.value.status == 403
    return json.loads(refused.value.body)["message"]


def test_a_developer_pastes_a_real_refusal_and_gets_the_smallest_role_prefilled(
    alice_client, make_cluster, catalogue
):
    cluster, sim = make_cluster("dev")
    message = forbidden_message_from(sim, "alice", "payments")

    response = ask(alice_client, message=message, cluster=cluster.name)

    page = response.content.decode()
    assert response.status_code == 200
    assert "The smallest role that allows it: Viewer" in page
    assert "ClusterRole view" in page
    assert request_link(page) == {
        "role": ["viewer"],
        "cluster": [cluster.name],
        "namespace": ["payments"],
    }
    # and every role of the catalogue, judged on that cluster
    assert set(verdicts_on(page, cluster.name)) == set(
        Role.objects.values_list("display_name", flat=True)
    )


def test_typed_fields_work_like_a_pasted_message(alice_client, make_cluster, catalogue):
    cluster, _ = make_cluster("dev")

    page = ask(
        alice_client, verb="get", resource="secrets", namespace="payments", cluster=cluster.name
    ).content.decode()

    assert "The smallest role that allows it: Developer" in page
    assert request_link(page)["role"] == ["developer"]
    verdicts = verdicts_on(page, cluster.name)
    assert verdicts["Viewer"] == "does not allow it"  # view does not read Secrets
    assert verdicts["Developer"] == "allows it"


def verdicts_on(page: str, cluster: str) -> dict[str, str]:
    """The "Every role on <cluster>" list: role display name -> its verdict's words."""
    heading = BeautifulSoup(page, "html.parser").find("h2", string=f"Every role on {cluster}")
    assert heading is not None, "no list of every role"
    return {
        item.strong.get_text(): item.select_one(".tag").get_text()
        for item in heading.find_next("ul", class_="verdicts").find_all("li")
    }


def test_rules_are_read_from_the_cluster_including_aggregated_ones(
    alice_client, make_cluster, catalogue
):
    cluster, sim = make_cluster("dev")
    widgets = (
        'widgets.example.com is forbidden: User "alice" cannot list resource "widgets" in API '
        'group "example.com" in the namespace "payments"'
    )
    before = ask(alice_client, message=widgets, cluster=cluster.name).content.decode()
    assert "The smallest role that allows it: Admin" in before  # only cluster-admin's "*"

    # The cluster's operators aggregate widgets into view; Warden must see it, not a copy.
    sim.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {
                "name": "widgets-view",
                "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"},
            },
            "rules": [{"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["list"]}],
        }
    )
    cache.clear()

    after = ask(alice_client, message=widgets, cluster=cluster.name).content.decode()
    assert "The smallest role that allows it: Viewer" in after


def test_the_clusters_roles_are_read_once_and_then_cached(alice_client, make_cluster, catalogue):
    cluster, sim = make_cluster("dev")
    ask(alice_client, message=LIST_PODS, cluster=cluster.name)
    reads = sim.counters[("get", "clusterroles")]

    ask(alice_client, message=LIST_PODS, cluster=cluster.name)

    assert reads == 3  # view, edit, cluster-admin: the catalogue's built-in roles
    assert sim.counters[("get", "clusterroles")] == reads


def test_an_unreachable_cluster_is_said_and_nothing_is_offered_blindly(
    alice_client, make_cluster, catalogue
):
    cluster, sim = make_cluster("dev")
    sim.set_unreachable()

    page = ask(alice_client, message=LIST_PODS, cluster=cluster.name).content.decode()

    assert "could not check" in page
    assert "is unreachable" in page
    assert "request-link" not in page
    assert "No role of the catalogue allows it" in page


def test_a_role_pointing_at_a_cluster_role_the_cluster_lacks_is_not_offered(
    alice_client, make_cluster, catalogue
):
    cluster, _ = make_cluster("dev")
    reader = Role.objects.create(name="reader", display_name="Reader", rank=1)
    RoleDefinition.objects.create(role=reader, cluster_role="monitoring-reader")

    page = ask(alice_client, message=LIST_PODS, cluster=cluster.name).content.decode()

    assert f"The ClusterRole monitoring-reader does not exist on {cluster.name}" in page
    assert "The smallest role that allows it: Viewer" in page


def test_holding_a_grant_that_is_not_reconciled_yet_is_the_answer(
    alice_client, make_cluster, catalogue, people
):
    cluster, _ = make_cluster("dev")
    Grant.objects.create(
        team=people["payments"], role=catalogue["developer"], namespaces=["payments"]
    )

    page = ask(alice_client, message=LIST_PODS, cluster=cluster.name).content.decode()

    assert "You should already be allowed" in page
    assert "is not in force on" in page
    assert "request-link" not in page


def test_holding_a_grant_in_force_points_elsewhere(alice_client, make_cluster, catalogue, people):
    cluster, sim = make_cluster("dev")
    sim.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "payments"}})
    Grant.objects.create(
        team=people["payments"], role=catalogue["developer"], namespaces=["payments"]
    )
    reconcile_cluster(cluster.pk)

    page = ask(alice_client, message=LIST_PODS, cluster=cluster.name).content.decode()

    assert "You should already be allowed" in page
    assert "in force on" in page
    assert "another cluster" in page


def test_another_persons_grant_does_not_count_for_alice(
    alice_client, make_cluster, catalogue, people
):
    cluster, _ = make_cluster("dev")
    Grant.objects.create(person=people["carol"], role=catalogue["developer"])

    page = ask(alice_client, message=LIST_PODS, cluster=cluster.name).content.decode()

    assert "You should already be allowed" not in page
    assert "request-link" in page


@pytest.mark.parametrize(
    ("params", "complaint"),
    [
        ({"message": "error: You must be logged in to the server (Unauthorized)"}, "no Kubernetes"),
        ({"verb": "get"}, "which resource"),
        ({"message": LIST_PODS}, "Choose the cluster the message came from"),
        ({"message": LIST_PODS, "cluster": "no-such-cluster"}, "Select a valid choice"),
    ],
)
def test_bad_input_is_answered_with_what_to_fix(alice_client, make_cluster, params, complaint):
    make_cluster("dev")
    make_cluster("prod")  # two clusters: none is preselected
    params.setdefault("cluster", "")

    response = ask(alice_client, **params)

    assert response.status_code == 200
    page = response.content.decode()
    assert "Warden needs more to go on" in page
    assert complaint in page


def test_a_retired_cluster_cannot_be_chosen(alice_client, make_cluster, catalogue):
    cluster, _ = make_cluster("dev")
    Cluster.objects.filter(pk=cluster.pk).update(state="retired")

    page = ask(alice_client, message=LIST_PODS, cluster=cluster.name).content.decode()

    assert "Select a valid choice" in page


def test_htmx_gets_just_the_answer(alice_client, make_cluster, catalogue):
    cluster, _ = make_cluster("dev")

    response = alice_client.get(
        reverse("why-forbidden"),
        {"message": LIST_PODS, "cluster": cluster.name},
        headers={"HX-Request": "true"},
    )

    page = response.content.decode()
    assert page.lstrip().startswith('<div id="answer"')
    assert "<html" not in page
    assert "The smallest role that allows it: Viewer" in page
    assert "HX-Request" in response["Vary"]


def test_the_empty_page_asks_and_preselects_the_only_cluster(alice_client, make_cluster):
    cluster, _ = make_cluster("dev")

    page = ask(alice_client).content.decode()

    assert "Warden needs more to go on" not in page
    assert f'<option value="{cluster.name}" selected>' in page


def test_it_needs_a_login(client):
    response = client.get(reverse("why-forbidden"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
