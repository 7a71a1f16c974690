"""The admin site: what operators may change there is audited; grants are changed elsewhere."""

from __future__ import annotations

import pytest

from access.models import ApprovalPolicy, AuditEvent, Grant, Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client, company):
    company.olivia.is_superuser = True
    company.olivia.save()
    client.force_login(company.olivia)
    return client


def test_changing_an_approval_policy_in_the_admin_is_audited(operator_client, company):
    policy = ApprovalPolicy.objects.get(environment="prod", role=None)
    data = {
        "name": policy.name,
        "environment": "prod",
        "tier": "",
        "role": "",
        "approvals_required": "3",
        "approver_teams": [company.teams["approvers"].pk],
        "self_approval_forbidden": "on",
        "max_duration": "1 00:00:00",
        "default_duration": "04:00:00",
        "break_glass_allowed": "on",
        "break_glass_duration": "01:00:00",
        "break_glass_teams": [company.teams["approvers"].pk],
        "break_glass_roles": [Role.objects.get(name="developer").pk],
    }

    response = operator_client.post(f"/admin/access/approvalpolicy/{policy.pk}/change/", data)

    assert response.status_code == 302, response.content.decode()[:2000]
    event = AuditEvent.objects.get(action="policy.saved")
    assert event.actor_name == "olivia"
    assert (event.before["approvals_required"], event.after["approvals_required"]) == (2, 3)
    assert event.after["approver_teams"] == ["approvers"]
    assert event.after["break_glass_teams"] == ["approvers"]
    assert event.after["break_glass_roles"] == ["developer"]


def test_grants_cannot_be_changed_in_the_admin(operator_client, company):
    grant = Grant.objects.create(
        team=company.teams["payments"], role=Role.objects.get(name="viewer")
    )

    assert operator_client.get("/admin/access/grant/add/").status_code == 403
    response = operator_client.post(
        f"/admin/access/grant/{grant.pk}/change/", {"role": grant.role_id}
    )
    assert response.status_code == 403
    assert operator_client.get(f"/admin/access/grant/{grant.pk}/change/").status_code == 200
