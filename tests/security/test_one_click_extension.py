"""Issue 19: one-click extension, within what an approval policy allows and never more.

Only where every policy governing the access says so (`self_extension`), only by its requester,
only for access in force, and never to last longer in all than the strictest policy's longest
duration: what an approver could have given at the start. Everywhere else the page says the
request goes to the approvers again."""

from __future__ import annotations

from datetime import timedelta

import pytest

from access.models import AccessRequest, ApprovalPolicy, AuditEvent, Grant
from access.services import requests
from tests.factories import ask

pytestmark = pytest.mark.django_db


@pytest.fixture
def in_force(company, fleet):
    """alice's developer access on staging, approved by judy for the usual 4 hours, under a
    policy that allows extending it up to 1 day in all."""
    ApprovalPolicy.objects.filter(environment="staging").update(
        self_extension=True, max_duration=timedelta(days=1), default_duration=timedelta(hours=4)
    )
    req = requests.approve_request(ask(company, duration=timedelta(hours=4)), company.judy)
    assert req.state == "active"
    return req


def ends(req) -> object:
    return Grant.objects.get(pk=req.grant_id).expires_at


def test_the_requester_extends_in_one_click_by_the_usual_duration(in_force, browser_as):
    before = ends(in_force)
    page = browser_as("alice").get(f"/requests/{in_force.pk}/")
    assert "Extend until" in page.content.decode()

    response = browser_as("alice").post(f"/requests/{in_force.pk}/extend")

    assert response.status_code == 302
    assert ends(in_force) == before + timedelta(hours=4)
    assert AccessRequest.objects.get(pk=in_force.pk).expires_at == ends(in_force)
    event = AuditEvent.objects.get(action="request.extended")
    assert event.actor_name == "alice" and event.object_id == str(in_force.pk)


def test_never_longer_in_all_than_the_policys_longest_duration(in_force, api):
    grant = Grant.objects.get(pk=in_force.grant_id)
    started = grant.starts_at or grant.created_at
    too_far = started + timedelta(days=1, minutes=1)

    refused = api("alice").post(
        f"/api/v1/requests/{in_force.pk}/extend/", {"until": too_far.isoformat()}, format="json"
    )
    assert refused.status_code == 400, refused.json()
    assert "at the latest" in str(refused.json())

    at_most = started + timedelta(days=1)
    allowed = api("alice").post(
        f"/api/v1/requests/{in_force.pk}/extend/", {"until": at_most.isoformat()}, format="json"
    )
    assert allowed.status_code == 200, allowed.json()
    assert ends(in_force) == at_most
    # and then nothing more in one click: the page says to ask again
    again = api("alice").post(f"/api/v1/requests/{in_force.pk}/extend/", {}, format="json")
    assert again.status_code == 400 and "longest its policy allows" in str(again.json())


@pytest.mark.parametrize("who", ["bob", "judy", "olivia"])
def test_nobody_but_the_requester_extends(in_force, api, browser_as, who):
    before = ends(in_force)

    by_api = api(who).post(f"/api/v1/requests/{in_force.pk}/extend/", {}, format="json")
    browser_as(who).post(f"/requests/{in_force.pk}/extend")

    assert by_api.status_code in (403, 404)
    assert ends(in_force) == before
    assert not AuditEvent.objects.filter(action="request.extended").exists()


def test_where_the_policy_does_not_allow_it_the_page_sends_to_the_approvers(
    in_force, api, browser_as
):
    ApprovalPolicy.objects.filter(environment="staging").update(self_extension=False)
    before = ends(in_force)

    page = browser_as("alice").get(f"/requests/{in_force.pk}/").content.decode()
    refused = api("alice").post(f"/api/v1/requests/{in_force.pk}/extend/", {}, format="json")

    assert "Extend until" not in page
    assert "sends every extension to the approvers" in page and "Ask for more time" in page
    assert refused.status_code == 400
    assert ends(in_force) == before


def test_ended_or_break_glass_access_is_not_extended(in_force, api, company):
    requests.end_access(in_force, company.alice, reason="done")

    refused = api("alice").post(f"/api/v1/requests/{in_force.pk}/extend/", {}, format="json")

    assert refused.status_code == 400 and "in force" in str(refused.json())


def test_an_extended_access_is_reminded_again_before_its_new_end(in_force, settings):
    settings.WARDEN_REMINDER_HOURS = 2
    grant = Grant.objects.get(pk=in_force.grant_id)
    assert requests.send_expiry_reminders(now=grant.expires_at - timedelta(hours=1)) == [
        in_force.pk
    ]

    requests.extend_access(AccessRequest.objects.get(pk=in_force.pk), in_force.requester.user)

    new_end = ends(in_force)
    assert requests.send_expiry_reminders(now=new_end - timedelta(hours=3)) == []
    assert requests.send_expiry_reminders(now=new_end - timedelta(hours=1)) == [in_force.pk]


def test_access_an_approver_shortened_is_not_extended_in_one_click(company, fleet, api):
    ApprovalPolicy.objects.filter(environment="staging").update(
        self_extension=True, max_duration=timedelta(days=1), default_duration=timedelta(hours=4)
    )
    req = requests.approve_request(
        ask(company, duration=timedelta(hours=4)), company.judy, duration=timedelta(hours=1)
    )
    before = ends(req)

    refused = api("alice").post(f"/api/v1/requests/{req.pk}/extend/", {}, format="json")

    assert refused.status_code == 400
    assert "An approver gave this access 1 hour" in str(refused.json())
    assert ends(req) == before
