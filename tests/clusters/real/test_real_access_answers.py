""" "Why forbidden?" and "who can?" answered for a real kube-apiserver: its own 403 messages, its
own aggregated roles, and its RBAC authorizer as the judge of who really can."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from access.forbidden import AccessAttempt
from access.models import Grant, Person
from clusters import services
from clusters.answers import who_can_answer
from tests.access.test_why_forbidden_page import ask, request_link
from tests.clusters.conftest import official_client
from tests.clusters.real.conftest import as_user
from tests.k8s.control_plane import PEOPLE

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_cached_roles():
    cache.clear()


@pytest.fixture
def alice_logged_in(client, people):
    """alice (in team payments, and a static-token user of the API server) logged in."""
    user = get_user_model().objects.create_user("alice")
    Person.objects.filter(username="alice").update(user=user)
    client.force_login(user)
    return client


def test_a_real_refusal_pasted_into_why_forbidden_gets_the_smallest_role(
    real_cluster,
    register,
    alice_logged_in,
    catalogue,
):
    cluster = register()
    with pytest.raises(ApiException) as refused:
        k8s_client.CoreV1Api(
            as_user(real_cluster, real_cluster.people["alice"])
        ).list_namespaced_secret("default")
    assert refused.value.status == 403
    message = json.loads(refused.value.body)["message"]

    page = ask(alice_logged_in, message=message, cluster=cluster.name).content.decode()

    assert "The smallest role that allows it: Developer" in page, message
    assert request_link(page) == {
        "role": ["developer"],
        "cluster": [cluster.name],
        "namespace": ["default"],
    }


def test_kubectl_style_refusal_text_is_understood_too(
    real_cluster, register, alice_logged_in, catalogue
):
    cluster = register()
    with pytest.raises(ApiException) as refused:
        k8s_client.CoreV1Api(as_user(real_cluster, real_cluster.people["alice"])).list_node()
    message = "Error from server (Forbidden): " + json.loads(refused.value.body)["message"]

    page = ask(alice_logged_in, message=message, cluster=cluster.name).content.decode()

    assert "The smallest role that allows it: Admin" in page, message


def subject_access(
    real, user: str, groups: list[str], verb: str, resource: str, namespace: str
) -> bool:
    """The real RBAC authorizer's verdict (SubjectAccessReview, asked by the admin)."""
    review = k8s_client.V1SubjectAccessReview(
        spec=k8s_client.V1SubjectAccessReviewSpec(
            user=user,
            groups=[*groups, "system:authenticated"],
            resource_attributes=k8s_client.V1ResourceAttributes(
                verb=verb, resource=resource, namespace=namespace
            ),
        )
    )
    answer = k8s_client.AuthorizationV1Api(official_client(real)).create_subject_access_review(
        review
    )
    return bool(answer.status.allowed)


@pytest.mark.parametrize(
    ("verb", "resource", "namespace"),
    [
        ("list", "pods", "default"),
        ("delete", "pods", "default"),
        ("get", "secrets", "default"),
        ("list", "pods", "kube-system"),
    ],
)
def test_who_can_agrees_with_the_real_authorizer(
    real_cluster, register, catalogue, people, verb, resource, namespace
):
    # given: payments may view everywhere, carol may edit in default
    cluster = register()
    Grant.objects.create(team=people["payments"], role=catalogue["viewer"])
    Grant.objects.create(
        person=people["carol"], role=catalogue["developer"], namespaces=["default"]
    )
    run = services.reconcile_cluster(cluster.pk)
    assert run.status == "succeeded", run.error

    # when
    answer = who_can_answer(
        AccessAttempt(verb=verb, resource=resource, namespace=namespace), cluster
    )

    # then: the people Warden names are exactly those the API server lets through
    really = {
        user
        for user, groups in PEOPLE.items()
        if subject_access(real_cluster, user, list(groups), verb, resource, namespace)
    }
    assert {p.username for p in answer.people} == really
