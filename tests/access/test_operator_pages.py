"""The operators' "who can do X on cluster Y?" and "what can person P do?" pages, through the
test client, on kubesim clusters reconciled for real."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.utils import timezone

from access.models import Grant, Person
from clusters.services import reconcile_cluster

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_cached_roles():
    cache.clear()


@pytest.fixture
def olivia(client):
    """An operator, logged in."""
    user = get_user_model().objects.create_user("olivia", is_staff=True)
    client.force_login(user)
    return user


@pytest.fixture
def alice_user(people):
    user = get_user_model().objects.create_user("alice")
    Person.objects.filter(username="alice").update(user=user)
    return user


def who_can(client, **params):
    return client.get("/who-can/", params)


def test_an_operator_asks_who_can_delete_pods_and_gets_the_team_and_its_members(
    client, olivia, make_cluster, catalogue, people
):
    cluster, _ = make_cluster("dev")
    developers = Grant.objects.create(
        team=people["payments"], role=catalogue["developer"], namespaces=["payments"]
    )
    Grant.objects.create(person=people["carol"], role=catalogue["viewer"])
    reconcile_cluster(cluster.pk)

    page = who_can(
        client, verb="delete", resource="pods", namespace="payments", cluster=cluster.name
    ).content.decode()

    assert "2 people can delete pods in the core API group in namespace" in page
    assert f'href="/grants/{developers.pk}/"' in page
    assert "team payments" in page and "ClusterRole edit" in page
    assert "alice" in page and "bob" in page
    assert "carol" not in page  # a viewer reads, she does not delete
    assert "in force" in page


def test_reading_is_allowed_to_more_people_than_deleting(
    client, olivia, make_cluster, catalogue, people
):
    cluster, _ = make_cluster("dev")
    Grant.objects.create(
        team=people["payments"], role=catalogue["developer"], namespaces=["payments"]
    )
    Grant.objects.create(person=people["carol"], role=catalogue["viewer"])

    page = who_can(
        client, verb="list", resource="pods", namespace="payments", cluster=cluster.name
    ).content.decode()

    assert "3 people can list pods" in page
    assert "viewer via a personal grant" in page
    assert "never reconciled" in page  # nothing has been written to the cluster yet


def test_nobody_is_the_answer_when_no_grant_allows_it(
    client, olivia, make_cluster, catalogue, people
):
    cluster, _ = make_cluster("prod")
    Grant.objects.create(
        team=people["payments"], role=catalogue["developer"], namespaces=["payments"]
    )

    page = who_can(
        client, verb="delete", resource="pods", namespace="payments", cluster=cluster.name
    ).content.decode()

    # developer is `view` on prod
    assert "Nobody can delete pods" in page
    assert "Roles that allow it here: <strong>Admin</strong>" in page


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"verb": "delete", "namespace": "payments"}, "Say which resource was refused"),
        ({"resource": "pods"}, "This field is required"),
        ({"verb": "get", "path": "metrics"}, "A non-resource path starts with /"),
    ],
)
def test_bad_questions_say_what_to_fix(client, olivia, make_cluster, catalogue, params, error):
    cluster, _ = make_cluster("dev")

    response = who_can(client, cluster=cluster.name, **params)

    assert response.status_code == 200
    assert error in response.content.decode()


def test_an_unknown_cluster_is_refused_by_name(client, olivia, catalogue):
    page = who_can(client, verb="get", resource="pods", cluster="nope").content.decode()

    assert "Select a valid choice" in page


def test_the_person_page_lists_personal_and_team_grants_with_their_rollout(
    client, olivia, make_cluster, catalogue, people
):
    dev, _ = make_cluster("dev")
    prod, _ = make_cluster("prod")
    team = Grant.objects.create(
        team=people["payments"], role=catalogue["developer"], namespaces=["payments"]
    )
    own = Grant.objects.create(
        person=people["alice"],
        role=catalogue["viewer"],
        expires_at=timezone.now() + timedelta(hours=3),
    )
    Grant.objects.create(person=people["bob"], role=catalogue["admin"])
    reconcile_cluster(dev.pk)  # prod is left unreconciled

    page = client.get(f"/people/{people['alice'].pk}/").content.decode()

    assert f"#{team.pk}" in page and f"#{own.pk}" in page
    assert "team payments" in page and "personal grant" in page
    assert "<strong>Admin</strong>" not in page  # bob's
    assert f"{dev.name}" in page and "in force" in page
    assert f"{prod.name}" in page and "not reconciled yet" in page
    assert "ends soon" in page  # within 24 hours


def test_an_inactive_person_is_flagged(client, olivia, people, catalogue):
    Person.objects.filter(pk=people["bob"].pk).update(is_active=False)

    page = client.get(f"/people/{people['bob'].pk}/").content.decode()

    assert "no longer active in the directory" in page


def test_finding_people_by_name(client, olivia, people):
    page = client.get("/people/", {"q": "ali"}).content.decode()

    assert f'href="/people/{people["alice"].pk}/"' in page
    assert "carol" not in page
    assert (
        "Nobody in the directory matches" in client.get("/people/", {"q": "zed"}).content.decode()
    )


@pytest.mark.parametrize(
    "path", ["/who-can/?verb=get&resource=pods", "/people/?q=a", "/people/{pk}/"]
)
def test_only_operators_see_who_can_what(client, alice_user, people, path):
    client.force_login(alice_user)

    response = client.get(path.format(pk=people["bob"].pk))

    assert response.status_code == 403
    assert "bob" not in response.content.decode()


@pytest.mark.parametrize("path", ["/who-can/", "/people/", "/people/1/"])
def test_anonymous_visitors_are_sent_to_log_in(client, path):
    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"].startswith("/login/")
