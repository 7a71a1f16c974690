"""Who may do what over the API: the same answers as the pages, person by person.

alice asks (requester), judy approves (approver team), olivia is an operator, mallory is an
outsider. A thing someone may not see is a 404 (its existence is not revealed); an operators'
endpoint is a 403 for anyone else, before any lookup, like the operators' pages.
"""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from access.models import AccessRequest, Grant, ReviewCampaign, Role
from access.services import grant_access, requests

pytestmark = pytest.mark.django_db
WHY = "Rolling out the payments fix for INC-77"


@pytest.fixture
def pending(company, fleet) -> AccessRequest:
    return requests.submit_request(
        requester=company.people["alice"],
        role=Role.objects.get(name="developer"),
        justification=WHY,
        environments=["staging"],
        namespaces=["payments"],
        actor=company.alice,
    )


@pytest.fixture
def bobs_grant(company) -> Grant:
    return grant_access(
        role=Role.objects.get(name="viewer"),
        person=company.people["bob"],
        actor=company.olivia,
        reason="on call",
    )


OPERATOR_ONLY_GETS = [
    "/api/v1/policies/",
    "/api/v1/policies/1/",
    "/api/v1/audit-events/",
    "/api/v1/audit-events/1/",
    "/api/v1/clusters/",
    "/api/v1/clusters/dev-1/",
    "/api/v1/clusters/no-such-cluster/",
    "/api/v1/reconcile-runs/",
    "/api/v1/reconcile-runs/99999/",
    "/api/v1/review-campaigns/",
    "/api/v1/review-campaigns/99999/",
    "/api/v1/grants/99999/revoke-plan/",
]
OPERATOR_ONLY_POSTS = [
    "/api/v1/policies/",
    "/api/v1/roles/",
    "/api/v1/roles/developer/define/",
    "/api/v1/roles/developer/plan/",
    "/api/v1/roles/developer/remove-definition/",
    "/api/v1/grants/",
    "/api/v1/grants/plan/",
    "/api/v1/grants/99999/revoke/",
    "/api/v1/clusters/",
    "/api/v1/clusters/dev-1/check/",
    "/api/v1/clusters/dev-1/reconcile/",
    "/api/v1/clusters/dev-1/retire/",
    "/api/v1/clusters/reconcile-fleet/",
    "/api/v1/review-campaigns/",
    "/api/v1/review-campaigns/99999/close/",
]
EVERYONE_GETS = [
    "/api/v1/me/",
    "/api/v1/me/access/",
    "/api/v1/me/clusters/",
    "/api/v1/people/",
    "/api/v1/teams/",
    "/api/v1/roles/",
    "/api/v1/roles/developer/",
    "/api/v1/grants/",
    "/api/v1/requests/",
    "/api/v1/requests/inbox/",
    "/api/v1/review-items/",
    "/api/v1/tokens/",
    "/api/v1/service-accounts/",
]


@pytest.mark.parametrize("url", OPERATOR_ONLY_GETS)
def test_an_outsider_gets_403_from_every_operator_page_of_the_api(api, fleet, url):
    assert api("mallory").get(url).status_code == 403
    assert api("alice").get(url).status_code == 403


@pytest.mark.parametrize("url", OPERATOR_ONLY_POSTS)
def test_an_outsider_cannot_change_anything_operators_change(api, fleet, url):
    assert api("mallory").post(url, {}, format="json").status_code == 403


@pytest.mark.parametrize("url", OPERATOR_ONLY_GETS[:-1] + EVERYONE_GETS)
def test_without_a_token_every_endpoint_answers_401(company, fleet, url):
    assert APIClient().get(url).status_code == 401


@pytest.mark.parametrize("url", EVERYONE_GETS)
def test_everyone_logged_in_reads_their_own_pages(api, fleet, url):
    assert api("mallory").get(url).status_code == 200


def test_an_operator_reads_the_operator_lists(api, fleet):
    olivia = api("olivia")
    for url in OPERATOR_ONLY_GETS:
        if "99999" in url or "no-such" in url or "/1/" in url:
            continue
        assert olivia.get(url).status_code == 200, url
    assert olivia.get("/api/v1/clusters/dev-1/").json()["name"] == "dev-1"
    assert "token" not in olivia.get("/api/v1/clusters/dev-1/").json()
    assert olivia.get("/api/v1/clusters/no-such-cluster/").status_code == 404


# --- access requests ----------------------------------------------------------------------------


def test_a_request_is_visible_to_its_requester_approvers_and_operators_only(api, pending):
    url = f"/api/v1/requests/{pending.pk}/"

    assert api("alice").get(url).status_code == 200
    assert api("judy").get(url).status_code == 200
    assert api("olivia").get(url).status_code == 200
    assert api("mallory").get(url).status_code == 404
    assert [r["id"] for r in api("mallory").get("/api/v1/requests/").json()["results"]] == []
    assert [r["id"] for r in api("judy").get("/api/v1/requests/inbox/").json()["results"]] == [
        pending.pk
    ]


def test_an_outsider_cannot_decide_cancel_or_end_a_request_they_cannot_see(api, pending):
    mallory = api("mallory")
    for verb in ("approve", "deny", "cancel", "end", "review"):
        answer = mallory.post(
            f"/api/v1/requests/{pending.pk}/{verb}/", {"comment": "no"}, format="json"
        )
        assert answer.status_code == 404, verb
    pending.refresh_from_db()
    assert pending.state == "pending"


def test_the_requester_cannot_approve_their_own_request(api, pending):
    answer = api("alice").post(f"/api/v1/requests/{pending.pk}/approve/", {}, format="json")

    assert answer.status_code == 403
    assert "your own request" in answer.json()["detail"]


def test_an_operator_outside_the_approver_team_cannot_approve(api, pending):
    answer = api("olivia").post(f"/api/v1/requests/{pending.pk}/approve/", {}, format="json")

    assert answer.status_code == 403
    assert "approvers" in answer.json()["detail"]


def test_another_requester_cannot_cancel_but_the_requester_can(api, company, pending):
    # bob is alice's teammate but not an approver: he cannot see her request.
    assert api("bob").post(f"/api/v1/requests/{pending.pk}/cancel/").status_code == 404
    cancelled = api("alice").post(f"/api/v1/requests/{pending.pk}/cancel/", {}, format="json")
    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "cancelled"
    again = api("alice").post(f"/api/v1/requests/{pending.pk}/cancel/", {}, format="json")
    assert again.status_code == 400
    assert "cancelled" in again.json()["detail"]


def test_a_local_account_cannot_ask_for_access(api, company, fleet, django_user_model):
    from access.services import tokens

    root = django_user_model.objects.create_user("root")
    _, secret = tokens.create_api_token(owner=root, name="x")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")

    answer = client.post("/api/v1/requests/", {"role": "viewer"}, format="json")

    assert answer.status_code == 403
    assert "local account" in answer.json()["detail"]


# --- grants -------------------------------------------------------------------------------------


def test_a_person_sees_their_own_grants_and_not_anothers(api, bobs_grant):
    url = f"/api/v1/grants/{bobs_grant.pk}/"

    assert api("bob").get(url).status_code == 200
    assert api("alice").get(url).status_code == 404
    assert api("olivia").get(url).status_code == 200
    assert [g["id"] for g in api("alice").get("/api/v1/grants/").json()["results"]] == []


def test_holding_a_grant_does_not_let_you_revoke_it(api, bobs_grant):
    answer = api("bob").post(
        f"/api/v1/grants/{bobs_grant.pk}/revoke/", {"reason": "mine"}, format="json"
    )

    assert answer.status_code == 403
    bobs_grant.refresh_from_db()
    assert bobs_grant.revoked_at is None


def test_team_grants_are_visible_to_the_teams_members(api, company):
    grant = grant_access(
        role=Role.objects.get(name="viewer"), team=company.teams["payments"], reason="team"
    )

    assert api("alice").get(f"/api/v1/grants/{grant.pk}/").status_code == 200
    assert api("judy").get(f"/api/v1/grants/{grant.pk}/").status_code == 404


# --- review items -------------------------------------------------------------------------------


def test_a_review_item_is_404_for_anyone_but_its_lead_and_operators(api, company, bobs_grant):
    from datetime import date, timedelta

    from access.services import reviews

    campaign = reviews.start_campaign(
        name="Q3", due_on=date.today() + timedelta(days=7), actor=company.olivia
    )
    item = campaign.items.get()
    url = f"/api/v1/review-items/{item.pk}/decide/"

    assert api("mallory").post(url, {"decision": "kept"}, format="json").status_code == 404
    assert api("bob").post(url, {"decision": "kept"}, format="json").status_code == 404
    kept = api("olivia").post(url, {"decision": "kept", "comment": "ok"}, format="json")
    assert kept.status_code == 200
    assert kept.json()["decision"] == "kept"
    assert isinstance(ReviewCampaign.objects.get().pk, int)
