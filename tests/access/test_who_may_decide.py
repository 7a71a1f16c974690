"""Who may decide a request is one rule: the inbox shows a request to exactly the people
may_approve lets decide it, for every persona and every kind of policy."""

from __future__ import annotations

import itertools

import pytest
from django.contrib.auth import get_user_model

from access.models import AccessRequest, Person
from access.permissions import inbox_for
from access.services.requests import may_approve
from tests.factories import ask

pytestmark = pytest.mark.django_db


@pytest.fixture
def requests_of_every_kind(company, fleet):
    """Requests by alice and by judy (an approver), under policies that name approver teams or
    none, let the manager decide or not, and forbid self-approval or not."""
    company.people["alice"].manager = company.people["peggy"]
    company.people["alice"].save(update_fields=["manager"])
    made = []
    kinds = itertools.product(("alice", "judy"), (True, False), (True, False), (True, False))
    for number, (who, teams, manager, self_ok) in enumerate(kinds):
        req = ask(company, who=who, namespaces=[f"payments-{number}"])
        if not teams:
            req.approver_teams.clear()
        AccessRequest.objects.filter(pk=req.pk).update(
            manager_may_approve=manager, self_approval_forbidden=not self_ok
        )
        made.append(AccessRequest.objects.get(pk=req.pk))
    return made


def personas(company):
    local = get_user_model().objects.create_user("local-admin", is_staff=True)
    left = company.users["bob"]
    Person.objects.filter(user=left).update(is_active=False)
    return {
        "plain member": company.users["alice"],
        "approver": company.users["judy"],
        "manager and approver": company.users["peggy"],
        "operator": company.users["olivia"],
        "outsider": company.users["mallory"],
        "local operator account": local,
        "a person who left": get_user_model().objects.get(pk=left.pk),
    }


def test_the_inbox_and_may_approve_agree_for_every_persona(company, requests_of_every_kind):
    decidable, everyone = 0, personas(company)
    for name, user in everyone.items():
        inbox = set(inbox_for(user).values_list("pk", flat=True))
        for req in requests_of_every_kind:
            allowed, why = may_approve(user, req)
            assert allowed == (req.pk in inbox), (name, req.pk, why)
            assert allowed or why  # a refusal always says why
            decidable += allowed
    # The rule is not trivially "nobody" or "everybody".
    assert 0 < decidable < len(everyone) * len(requests_of_every_kind)


def test_the_requester_never_sees_their_own_request_where_self_approval_is_forbidden(
    company, requests_of_every_kind
):
    judy = company.users["judy"]
    own = [r for r in requests_of_every_kind if r.requester.username == "judy"]

    for req in own:
        allowed, why = may_approve(judy, req)
        assert allowed == (not req.self_approval_forbidden and req.approver_teams.exists())
        if req.self_approval_forbidden:
            assert why == "You cannot approve your own request."
