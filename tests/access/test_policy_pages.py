"""The approval-policy editor (operators), through the test client: every change is checked,
audited, and governs the requests made after it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from access.models import ApprovalPolicy, AuditEvent, Role
from access.services import policies, requests

pytestmark = pytest.mark.django_db
WHY = "Rolling out the payments fix for INC-77"


def as_user(client, user):
    client.force_login(user)
    return client


def production(company):
    return ApprovalPolicy.objects.get(environment="prod", tier="", role=None)


def form(policy=None, **overrides):
    data = {
        "name": "Production",
        "environment": "prod",
        "tier": "",
        "role": "",
        "approvals_required": "3",
        "approver_teams": "approvers",
        "self_approval_forbidden": "on",
        "default_duration": "4h",
        "max_duration": "1d",
        "break_glass_allowed": "on",
        "break_glass_duration": "1h",
        "break_glass_teams": "approvers",
        "break_glass_roles": "developer",
        "reason": "SOX audit finding 12",
    }
    data.update(overrides)
    return data


def test_an_operator_sees_every_policy_in_plain_words(client, company):
    policy = production(company)
    policy.break_glass_allowed, policy.break_glass_duration = True, timedelta(hours=1)
    policies.save_policy(
        policy,
        approver_teams=[company.teams["approvers"]],
        break_glass_teams=[company.teams["approvers"]],
        break_glass_roles=[Role.objects.get(name="developer")],
        actor=company.olivia,
    )

    page = as_user(client, company.olivia).get("/policies/").content.decode()

    assert "Production" in page and "Development, viewer: granted at once" in page
    assert "granted at once" in page
    assert "usually 4 hours, at most 1 day" in page
    assert "1 hour, for developer, by approvers" in page


def test_changing_a_policy_is_audited_and_governs_new_requests(client, company, fleet):
    policy = production(company)
    as_user(client, company.olivia)
    assert 'value="1d"' in client.get(f"/policies/{policy.pk}/").content.decode()

    response = client.post(f"/policies/{policy.pk}/", form())

    assert response.status_code == 302, response.content.decode()[:3000]
    policy.refresh_from_db()
    assert policy.approvals_required == 3
    event = AuditEvent.objects.get(action="policy.saved")
    assert event.actor_name == "olivia" and event.reason == "SOX audit finding 12"
    assert (event.before["approvals_required"], event.after["approvals_required"]) == (2, 3)
    assert event.after["approver_teams"] == ["approvers"]
    req = requests.submit_request(
        requester=company.people["alice"],
        role=Role.objects.get(name="viewer"),
        environments=["prod"],
        namespaces=["payments"],
        justification=WHY,
        actor=company.alice,
    )
    assert req.approvals_required == 3


def test_a_new_role_specific_policy_wins_over_the_environment_one(client, company, fleet):
    as_user(client, company.olivia)
    viewer = Role.objects.get(name="viewer")

    response = client.post(
        "/policies/new",
        form(
            name="Production, viewer",
            role=viewer.pk,
            approvals_required="1",
            break_glass_allowed="",
            break_glass_duration="",
        ),
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    made = ApprovalPolicy.objects.get(name="Production, viewer")
    assert made.break_glass_duration is None
    assert AuditEvent.objects.get(action="policy.saved").before is None
    preview = requests.preview_request(
        company.people["alice"], viewer, environments=["prod"], namespaces=[]
    )
    assert preview.policy == made


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"default_duration": "2d"}, "The usual duration cannot be longer than the longest one."),
        ({"break_glass_duration": ""}, "Say how long break-glass access lasts."),
        ({"break_glass_duration": "3d"}, "Break-glass access cannot outlast the longest one."),
        ({"break_glass_teams": ""}, "Name the teams whose members may break glass."),
        ({"break_glass_roles": ""}, "Name the roles break-glass may give."),
        ({"approvals_required": "9"}, "Between 0 (granted at once) and 5."),
        ({"approver_teams": "approvers nobody"}, "No team named nobody in the directory."),
        ({"max_duration": "soon"}, "Write a duration such as 90m, 4h or 3d."),
        ({"reason": ""}, "This field is required."),
        ({"environment": "dev"}, "A policy for dev, any tier, any role exists already"),
    ],
)
def test_a_bad_policy_is_refused_with_what_to_fix_and_nothing_changes(
    client, company, overrides, error
):
    policy = production(company)
    as_user(client, company.olivia)

    response = client.post(f"/policies/{policy.pk}/", form(**overrides))

    assert response.status_code == 400
    assert error in response.content.decode()
    policy.refresh_from_db()
    assert policy.approvals_required == 2 and policy.environment == "prod"
    assert not AuditEvent.objects.filter(action="policy.saved").exists()


def test_deleting_a_policy_needs_a_reason_and_is_audited(client, company):
    policy = production(company)
    as_user(client, company.olivia)

    client.post(f"/policies/{policy.pk}/delete", {"reason": ""})
    assert ApprovalPolicy.objects.filter(pk=policy.pk).exists()

    client.post(f"/policies/{policy.pk}/delete", {"reason": "merged into the catch-all"})

    assert not ApprovalPolicy.objects.filter(pk=policy.pk).exists()
    event = AuditEvent.objects.get(action="policy.deleted")
    assert event.before["name"] == "Production" and event.reason == "merged into the catch-all"


def test_without_a_catch_all_the_list_warns(client, company):
    ApprovalPolicy.objects.filter(environment="", tier="", role=None).delete()

    page = as_user(client, company.olivia).get("/policies/").content.decode()

    assert "There is no catch-all policy" in page


def test_the_admin_is_held_to_the_same_rules(client, company):
    company.olivia.is_superuser = True
    company.olivia.save()
    policy = production(company)
    as_user(client, company.olivia)

    response = client.post(
        f"/admin/access/approvalpolicy/{policy.pk}/change/",
        {
            "name": policy.name,
            "environment": "prod",
            "tier": "",
            "role": "",
            "approvals_required": "2",
            "approver_teams": [company.teams["approvers"].pk],
            "self_approval_forbidden": "on",
            "max_duration": "04:00:00",
            "default_duration": "1 00:00:00",
        },
    )

    assert response.status_code == 200  # the form again, with the error
    assert "The usual duration cannot be longer than the longest one." in response.content.decode()
    policy.refresh_from_db()
    assert policy.max_duration == timedelta(days=1)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/policies/"),
        ("get", "/policies/new"),
        ("get", "/policies/{pk}/"),
        ("post", "/policies/{pk}/"),
        ("post", "/policies/{pk}/delete"),
    ],
)
def test_only_operators_edit_policies(client, company, method, path):
    policy = production(company)
    as_user(client, company.judy)  # an approver, not an operator

    response = getattr(client, method)(path.format(pk=policy.pk), form(reason="x"))

    assert response.status_code == 403
    policy.refresh_from_db()
    assert policy.approvals_required == 2
