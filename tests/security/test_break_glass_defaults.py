"""Issue 15, item 5: break-glass is off as shipped; when an operator turns it on for a policy,
it names who may break glass (teams) and for which roles.

The shipped "Production" policy let anyone break glass for any role on prod: a plain payments
member (alice), an approver (judy) or an outsider (mallory) got any role on prod (operator: full
control of a namespace) at once with one tick. Now nobody can until an operator (olivia) names
an on-call team and the roles it may take.
"""

from __future__ import annotations

import importlib
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.urls import reverse

from access.models import AccessRequest, ApprovalPolicy, Grant, Role, Team

pytestmark = pytest.mark.django_db
WHY = "Production is down: INC-1505, the payments API answers 500"


def glass(role="operator", **overrides):
    body = {
        "role": role,
        "environments": ["prod"],
        "namespaces": ["payments"],
        "duration": "1h",
        "justification": WHY,
        "break_glass": True,
    }
    body.update(overrides)
    return body


@pytest.fixture
def oncall(company):
    """bob is on call: the team an operator names for break-glass."""
    team = Team.objects.create(dn="cn=oncall,ou=groups,dc=example,dc=com", name="oncall")
    team.memberships.create(person=company.people["bob"], is_direct=True)
    return team


def production():
    return ApprovalPolicy.objects.get(environment="prod", tier="", role=None)


def assert_nothing_granted():
    assert not Grant.objects.exists()
    assert not AccessRequest.objects.filter(state="active").exists()


def test_no_shipped_policy_allows_break_glass(company):
    assert not ApprovalPolicy.objects.filter(break_glass_allowed=True).exists()


@pytest.mark.parametrize("who", ["alice", "judy", "mallory", "olivia"])
def test_as_shipped_nobody_breaks_glass_through_the_api(api, company, fleet, who):
    answer = api(who).post("/api/v1/requests/", glass(), format="json")

    assert answer.status_code == 400
    assert "Break-glass access is not allowed" in str(answer.json())
    assert_nothing_granted()


def test_as_shipped_nobody_breaks_glass_on_the_request_page(client, company, fleet):
    client.force_login(company.alice)

    page = client.post(
        reverse("request-new"),
        {
            "role": Role.objects.get(name="operator").pk,
            "environments": ["prod"],
            "namespaces": "payments",
            "justification": WHY,
            "break_glass": "on",
            "submit": "1",
        },
    )

    assert page.status_code in (200, 400)
    assert "Break-glass access is not allowed" in page.content.decode()
    assert_nothing_granted()


def test_turning_break_glass_on_needs_teams_and_roles(api, company, oncall):
    policy = production()
    olivia = api("olivia")

    bare = olivia.patch(
        f"/api/v1/policies/{policy.pk}/",
        {"break_glass_allowed": True, "break_glass_duration": "1h"},
        format="json",
    )
    named = olivia.patch(
        f"/api/v1/policies/{policy.pk}/",
        {
            "break_glass_allowed": True,
            "break_glass_duration": "1h",
            "break_glass_teams": ["oncall"],
            "break_glass_roles": ["developer"],
        },
        format="json",
    )
    by_alice = api("alice").patch(
        f"/api/v1/policies/{policy.pk}/",
        {"break_glass_teams": ["payments"], "break_glass_roles": ["admin"]},
        format="json",
    )

    assert bare.status_code == 400
    assert "break_glass_teams" in bare.json() or "teams" in str(bare.json())
    assert named.status_code == 200, named.json()
    assert named.json()["break_glass_teams"] == ["oncall"]
    assert named.json()["break_glass_roles"] == ["developer"]
    assert by_alice.status_code == 403


def test_turning_break_glass_on_in_the_policy_page_needs_teams_and_roles(client, company, oncall):
    policy = production()
    client.force_login(company.olivia)
    form = {
        "name": policy.name,
        "environment": "prod",
        "tier": "",
        "role": "",
        "approvals_required": 2,
        "approver_teams": "approvers",
        "self_approval_forbidden": "on",
        "default_duration": "4h",
        "max_duration": "1d",
        "break_glass_allowed": "on",
        "break_glass_duration": "1h",
        "reason": "on-call may break glass for developer",
    }

    bare = client.post(reverse("policy-edit", args=[policy.pk]), form)
    named = client.post(
        reverse("policy-edit", args=[policy.pk]),
        {**form, "break_glass_teams": "oncall", "break_glass_roles": "developer"},
    )

    assert bare.status_code == 400 and "Name the teams" in bare.content.decode()
    assert named.status_code == 302
    policy.refresh_from_db()
    assert [t.name for t in policy.break_glass_teams.all()] == ["oncall"]
    assert [r.name for r in policy.break_glass_roles.all()] == ["developer"]


@pytest.fixture
def oncall_may_break_glass_for_developer(api, company, oncall):
    policy = production()
    answer = api("olivia").patch(
        f"/api/v1/policies/{policy.pk}/",
        {
            "break_glass_allowed": True,
            "break_glass_duration": "1h",
            "break_glass_teams": ["oncall"],
            "break_glass_roles": ["developer"],
        },
        format="json",
    )
    assert answer.status_code == 200, answer.json()
    return policy


def test_when_on_only_the_named_team_breaks_glass_for_the_named_roles(
    api, company, fleet, oncall_may_break_glass_for_developer
):
    on_call = api("bob").post("/api/v1/requests/", glass("developer"), format="json")
    wrong_role = api("bob").post("/api/v1/requests/", glass("operator"), format="json")
    not_on_call = api("alice").post("/api/v1/requests/", glass("developer"), format="json")
    approver = api("judy").post("/api/v1/requests/", glass("developer"), format="json")

    assert on_call.status_code == 201, on_call.json()
    assert on_call.json()["state"] == "active"
    assert wrong_role.status_code == 400 and "only for developer" in str(wrong_role.json())
    assert not_on_call.status_code == 400 and "only members of oncall" in str(not_on_call.json())
    assert approver.status_code == 400
    assert Grant.objects.count() == 1
    assert Grant.objects.get().person == company.people["bob"]
    assert Grant.objects.get().expires_at - Grant.objects.get().created_at <= timedelta(hours=1)


def test_the_upgrade_turns_off_break_glass_that_named_nobody(company):
    policy = production()
    ApprovalPolicy.objects.filter(pk=policy.pk).update(
        break_glass_allowed=True, break_glass_duration=timedelta(hours=1)
    )

    migration = importlib.import_module("access.migrations.0011_break_glass_teams_and_roles")
    migration.close_break_glass(django_apps, None)

    policy.refresh_from_db()
    assert (policy.break_glass_allowed, policy.break_glass_duration) == (False, None)
