"""Issue 15, item 13: an approver's "narrowing" must be a subset of what was asked for.

The requester (alice, a plain payments member) asks for `team-?`; an approver (judy) who
"narrows" it to `team-*` would grant every team namespace. fnmatch containment let that through
(`?` matches the character `*`); the namespaces a narrowed pattern reaches must all be reached
by the request's patterns.
"""

from __future__ import annotations

import pytest

from access.models import AccessRequest, Approval, Grant
from access.namespace_patterns import is_subset, outside, overlap
from tests.factories import ask

pytestmark = pytest.mark.django_db


def assert_still_pending(req):
    req = AccessRequest.objects.get(pk=req.pk)
    assert req.state == "pending"
    assert not Approval.objects.filter(request=req).exists()
    assert not Grant.objects.exists()


@pytest.mark.parametrize(
    ("asked", "widened"),
    [
        (["team-?"], "team-*"),
        (["team-[ab]"], "team-[a-c]"),
        (["team-a?"], "team-a*"),
        (["team-*-db"], "team-*"),
        (["payments"], "payment?"),
    ],
)
def test_an_approver_cannot_widen_a_pattern_through_the_api(api, company, fleet, asked, widened):
    req = ask(company, namespaces=asked)

    answer = api("judy").post(
        f"/api/v1/requests/{req.pk}/approve/",
        {"comment": "ok", "namespaces": [widened]},
        format="json",
    )

    assert answer.status_code == 400, answer.json()
    assert "not all part of this request" in str(answer.json())
    assert_still_pending(req)


def test_an_approver_cannot_widen_a_pattern_on_the_request_page(client, company, fleet):
    req = ask(company, namespaces=["team-?"])
    client.force_login(company.judy)

    client.post(f"/requests/{req.pk}/approve", {"comment": "ok", "namespaces": "team-*"})

    assert_still_pending(req)


def test_a_true_narrowing_of_a_pattern_is_accepted(api, company, fleet):
    req = ask(company, namespaces=["team-?", "payments"])

    answer = api("judy").post(
        f"/api/v1/requests/{req.pk}/approve/",
        {"comment": "only team a", "namespaces": ["team-a"]},
        format="json",
    )

    assert answer.status_code == 200, answer.json()
    assert answer.json()["namespaces"] == ["team-a"]


@pytest.mark.parametrize(
    ("wanted", "held", "subset"),
    [
        ("team-?", ["team-*"], True),
        ("team-*", ["team-?"], False),
        ("team-a", ["team-?"], True),
        ("team-[a-c]", ["team-[ab]", "team-c"], True),
        ("team-[a-c]", ["team-[ab]"], False),
        ("team-[!a]", ["team-?"], True),
        ("*", ["*"], True),
        ("a*b", ["a*"], True),
        ("a*", ["a*b"], False),
        ("team-**", ["team-*"], True),
    ],
)
def test_the_subset_rule_of_the_namespace_pattern_language(wanted, held, subset):
    assert is_subset(wanted, held) is subset
    if not subset:
        # the counterexample is a namespace the wider pattern reaches and the held ones do not
        assert outside(wanted, held) is not None


def test_patterns_overlap_only_when_a_namespace_matches_both():
    assert overlap(["team-*"], ["*-db"])
    assert not overlap(["a?"], ["b*"])
    assert not overlap(["team-?"], ["team-ab"])
