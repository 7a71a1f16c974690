"""Helpers that build what many tests need, said once (the fixtures are in tests/fixtures/)."""

from __future__ import annotations

from typing import Any

from access.models import AccessRequest, Role
from access.services import requests

WHY = "Debugging the checkout incident INC-1234"


def ask(company: Any, who: str = "alice", role_name: str = "developer", **kw: Any) -> AccessRequest:
    """`who` of the test company asks for a role, through the service the pages and API use;
    staging / payments with a justification unless the test says otherwise."""
    kw.setdefault("environments", ["staging"])
    kw.setdefault("namespaces", ["payments"])
    kw.setdefault("justification", WHY)
    return requests.submit_request(
        requester=company.people[who],
        role=Role.objects.get(name=role_name),
        actor=company.users[who],
        **kw,
    )
