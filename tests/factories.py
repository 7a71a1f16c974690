"""Helpers that build what many tests need, said once (the fixtures are in tests/fixtures/)."""

from __future__ import annotations

import io
import sys
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


def warden(*args: str, stdin: str = "") -> tuple[int, str, str]:
    """`warden ARGS` (the CLI, in this process) as a person types it: exit code, stdout, stderr."""
    from warden_cli.main import main

    out, err = io.StringIO(), io.StringIO()
    old_err, old_in = sys.stderr, sys.stdin
    sys.stderr, sys.stdin = err, io.StringIO(stdin)
    try:
        code = main(list(args), out=out)
    finally:
        sys.stderr, sys.stdin = old_err, old_in
    return code, out.getvalue(), err.getvalue()
