"""Issue 15, item 10: a person who left keeps no working session.

Every request — pages and API, by session or by token — checks that the account and the
directory person behind it are still active. A leaver's session logged in before they left is
ended at their next request, whoever they were: a plain team member, an approver, an operator.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.urls import reverse
from rest_framework.test import APIClient

from access import services
from access.models import AccessRequest, Person, Role
from access.services import requests, tokens

pytestmark = pytest.mark.django_db
WHY = "Rolling out the payments fix for INC-77"


@pytest.fixture(autouse=True)
def _fresh_throttle():
    cache.clear()


def leaves(company, who):
    """What a directory sync does to a leaver's Person (the account may lag behind)."""
    Person.objects.filter(username=who).update(is_active=False)


def assert_logged_out(client):
    home = client.get(reverse("home"))
    assert home.status_code == 302 and reverse("login") in home["Location"]
    assert client.get("/api/v1/me/").status_code in (401, 403)
    assert "_auth_user_id" not in client.session


def test_a_leaver_logged_in_with_the_directory_loses_the_session_at_the_next_sync(
    client, directory
):
    # given alice logged in with her directory password
    for name in ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan"):
        directory.add_person(name, password="wonderland")
    directory.add_group("payments", people=["alice", "bob"])
    services.sync_directory()
    answer = client.post(reverse("login"), {"username": "alice", "password": "wonderland"})
    assert answer.status_code == 302
    assert client.get(reverse("home")).status_code == 200
    # when she is disabled in the directory and Warden syncs
    directory.disable("alice")
    run = services.sync_directory()
    assert run.people_deactivated == 1
    # then her session no longer works, on the pages or the API
    assert_logged_out(client)


@pytest.mark.parametrize("who", ["alice", "judy", "olivia"])
def test_a_leavers_session_ends_even_before_the_account_is_disabled(client, company, who):
    # plain member, approver, operator: each logged in before leaving
    client.force_login(company.users[who])
    assert client.get(reverse("home")).status_code == 200

    leaves(company, who)

    assert get_user_model().objects.get(username=who).is_active  # the account lags behind
    assert_logged_out(client)


def test_a_disabled_account_loses_its_session(client, company):
    client.force_login(company.alice)
    get_user_model().objects.filter(username="alice").update(is_active=False)

    assert_logged_out(client)


def test_an_approver_who_left_cannot_approve_with_an_old_session(client, company, fleet):
    req = requests.submit_request(
        requester=company.people["alice"],
        role=Role.objects.get(name="developer"),
        actor=company.alice,
        environments=["staging"],
        namespaces=["payments"],
        justification=WHY,
    )
    client.force_login(company.judy)
    leaves(company, "judy")

    client.post(reverse("request-approve", args=[req.pk]), {"comment": "ok"})
    api = client.post(f"/api/v1/requests/{req.pk}/approve/", {}, content_type="application/json")

    assert api.status_code in (401, 403)
    assert AccessRequest.objects.get(pk=req.pk).state == "pending"


@pytest.mark.parametrize("who", ["alice", "olivia"])
def test_a_leavers_api_token_stops_working(company, who):
    _, secret = tokens.create_api_token(owner=company.users[who], name="ci")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert client.get("/api/v1/me/").status_code == 200

    leaves(company, who)

    assert client.get("/api/v1/me/").status_code == 401
