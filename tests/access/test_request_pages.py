"""The request, approval and audit pages through Django's test client, incl. who may see what."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from django.utils import timezone
from kubernetes import client as k8s_client

from access import audit
from access.choices import RequestState
from access.models import AccessRequest, Grant, Role
from access.services import requests
from clusters.choices import ReconcileStatus
from tests.clusters.conftest import official_client
from tests.fixtures.company import payments_may_break_glass_on_prod

pytestmark = pytest.mark.django_db
WHY = "Rolling out the payments fix for INC-77"


def as_user(client, user):
    client.force_login(user)
    return client


def form(**overrides):
    data = {
        "role": Role.objects.get(name="developer").pk,
        "environments": ["staging"],
        "namespaces": "payments",
        "duration": "",
        "justification": WHY,
        "ticket": "INC-77",
    }
    data.update(overrides)
    return data


def filed(company, who="alice", **kw):
    kw.setdefault("environments", ["staging"])
    kw.setdefault("namespaces", ["payments"])
    return requests.submit_request(
        requester=company.people[who],
        role=Role.objects.get(name="developer"),
        justification=WHY,
        actor=company.users[who],
        **kw,
    )


def test_a_developer_previews_then_submits_a_request(client, company, fleet):
    as_user(client, company.alice)

    preview = client.post("/requests/new", form(preview="1"))
    page = preview.content.decode()
    assert preview.status_code == 200
    assert "staging-1" in page and "ClusterRole edit" in page
    assert "1 approval by Judy, Peggy (team approvers)" in page
    assert not AccessRequest.objects.exists()

    submitted = client.post("/requests/new", form(submit="1"))
    req = AccessRequest.objects.get()
    assert submitted.status_code == 302
    assert submitted["Location"] == f"/requests/{req.pk}/"
    assert req.ticket == "INC-77"
    assert "waiting for approval" in client.get(submitted["Location"]).content.decode()


def test_the_live_preview_explains_a_refusal(client, company, fleet):
    as_user(client, company.alice)

    response = client.post("/requests/preview", form(namespaces="", environments=["prod"]))

    assert "name the namespaces you need" in response.content.decode()


def test_a_refused_submission_keeps_the_form_and_says_why(client, company, fleet):
    as_user(client, company.alice)

    response = client.post("/requests/new", form(submit="1", justification="x"))

    assert response.status_code == 200
    assert "Say why you need this access" in response.content.decode()
    assert not AccessRequest.objects.exists()


def test_the_request_page_is_prefilled_by_the_forbidden_explainer_and_by_extend(
    client, company, fleet
):
    as_user(client, company.alice)
    page = client.get("/requests/new?role=viewer&cluster=prod-1&namespace=payments")
    text = page.content.decode()
    assert 'value="prod-1"' in text and 'value="payments"' in text

    old = requests.approve_request(filed(company), company.judy)
    text = client.get(f"/requests/new?extend={old.pk}").content.decode()
    assert WHY in text and f'value="{old.pk}"' in text
    assert f"More time for request #{old.pk}: it goes to the approvers again" in text


def test_an_approver_approves_from_the_request_page(client, company, fleet):
    req = filed(company)
    as_user(client, company.judy)

    page = client.get(f"/requests/{req.pk}/").content.decode()
    assert "Approve" in page and WHY in page
    assert "1 approval by Judy, Peggy (team approvers)" in page
    response = client.post(f"/requests/{req.pk}/approve", {"comment": "go ahead"})

    assert response.status_code == 302
    assert AccessRequest.objects.get(pk=req.pk).state == RequestState.ACTIVE


def test_the_inbox_lists_what_waits_and_approves_in_bulk(client, company, fleet):
    first = filed(company)
    second = filed(company, who="bob")
    as_user(client, company.judy)

    inbox = client.get("/inbox/").content.decode()
    assert f"#{first.pk}" in inbox and f"#{second.pk}" in inbox
    assert "1 cluster × 1 namespace" in inbox  # noqa: RUF001
    client.post("/inbox/bulk", {"ids": [first.pk, second.pk], "decision": "approve"})

    states = set(AccessRequest.objects.values_list("state", flat=True))
    assert states == {RequestState.ACTIVE}
    assert "Nothing is waiting" in client.get("/inbox/").content.decode()


def test_the_requester_does_not_see_their_own_request_in_the_inbox(client, company, fleet):
    company.teams["approvers"].memberships.create(person=company.people["alice"])
    req = filed(company)
    as_user(client, company.alice)

    assert f"#{req.pk}" not in client.get("/inbox/").content.decode()


@pytest.mark.parametrize("outsider", ["mallory", "bob", "olivia_not_operator"])
def test_nobody_else_sees_or_acts_on_a_request(client, company, fleet, outsider):
    req = filed(company)
    if outsider == "olivia_not_operator":
        company.olivia.is_staff = False
        company.olivia.save()
        outsider = "olivia"
    as_user(client, company.users[outsider])

    assert client.get(f"/requests/{req.pk}/").status_code == 404
    for action in ("approve", "deny", "cancel", "end", "review"):
        response = client.post(f"/requests/{req.pk}/{action}", {"comment": "x"})
        assert response.status_code == 404, action
    client.post("/inbox/bulk", {"ids": [req.pk], "decision": "approve"})
    assert AccessRequest.objects.get(pk=req.pk).state == RequestState.PENDING


def test_an_operator_sees_every_request_but_approves_only_as_policy_says(client, company, fleet):
    req = filed(company)
    as_user(client, company.olivia)

    assert client.get(f"/requests/{req.pk}/").status_code == 200
    client.post(f"/requests/{req.pk}/approve", {})
    assert AccessRequest.objects.get(pk=req.pk).state == RequestState.PENDING


def test_my_access_shows_where_until_when_and_ends_in_place(client, company, fleet):
    req = requests.approve_request(filed(company), company.judy)
    Grant.objects.create(
        team=company.teams["payments"], role=Role.objects.get(name="viewer"), namespaces=["default"]
    )
    AccessRequest.objects.filter(pk=req.pk).update(expires_at=timezone.now() + timedelta(hours=2))
    Grant.objects.filter(pk=req.grant_id).update(expires_at=timezone.now() + timedelta(hours=2))
    as_user(client, company.alice)

    page = client.get("/").content.decode()
    assert "team payments" in page and f"request #{req.pk}" in page
    assert "staging-1" in page and "ends soon" in page
    client.post(f"/requests/{req.pk}/end", {"reason": "done"})
    assert AccessRequest.objects.get(pk=req.pk).state == RequestState.REVOKED


def test_my_access_and_the_inbox_cost_the_same_queries_for_many_requests(
    client, company, fleet, django_assert_max_num_queries
):
    for i in range(3):
        filed(company, namespaces=[f"ns-{i}"])
    as_user(client, company.judy)
    with django_assert_max_num_queries(20) as few:
        client.get("/inbox/")
    for i in range(3, 30):
        filed(company, namespaces=[f"ns-{i}"])
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get("/inbox/")

    for req in AccessRequest.objects.filter(state="pending")[:10]:
        requests.approve_request(req, company.judy)
    as_user(client, company.alice)
    with django_assert_max_num_queries(20):
        client.get("/")


# --- the audit trail --------------------------------------------------------------------------


def test_only_operators_read_the_audit_trail(client, company, fleet):
    filed(company)
    as_user(client, company.alice)
    assert client.get("/audit/").status_code == 403
    assert client.get("/audit/?format=csv").status_code == 403

    as_user(client, company.olivia)
    page = client.get("/audit/?action=request.").content.decode()
    assert "request.submitted" in page


def test_the_audit_trail_exports_as_csv_and_json(client, company, fleet):
    req = filed(company)
    audit.record("note", reason='=HYPERLINK("http://evil")')
    as_user(client, company.olivia)

    body = b"".join(client.get("/audit/?format=csv").streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(body)))
    # (then olivia's login)
    assert [r["action"] for r in rows] == ["request.submitted", "note", "auth.login"]
    assert rows[0]["object_id"] == str(req.pk)
    assert rows[1]["reason"].startswith("'=")  # no formula in a spreadsheet

    lines = b"".join(client.get("/audit/?format=json&action=request").streaming_content)
    events = [json.loads(line) for line in lines.decode().splitlines()]
    assert [e["action"] for e in events] == ["request.submitted"]
    assert events[0]["hash"] and events[0]["after"]["role"] == "developer"


def test_the_audit_page_verifies_the_chain(client, company, fleet):
    filed(company)
    as_user(client, company.olivia)

    assert (
        # the request, and olivia's login
        "The chain is intact: 2 events checked." in client.get("/audit/?verify=1").content.decode()
    )


def test_the_preview_is_shown_on_load_for_a_prefilled_form(client, company, fleet):
    as_user(client, company.alice)

    page = client.get("/requests/new?role=developer&cluster=staging-1&namespace=payments")

    text = page.content.decode()
    assert "Pick a role and a scope to see" not in text
    assert "ClusterRole edit" in text and "payments" in text
    assert "1 approval by Judy, Peggy (team approvers)" in text


def test_a_namespaced_role_without_namespaces_is_not_called_cluster_wide(client, company, fleet):
    as_user(client, company.alice)

    page = client.get("/requests/new?role=developer&cluster=staging-1").content.decode()

    preview = page[page.index('id="preview"') :]
    assert "cluster-wide" not in preview
    assert "no namespace yet: name the namespaces you need" in preview


def test_break_glass_access_awaiting_review_is_in_the_approvers_inbox(client, company, fleet):
    payments_may_break_glass_on_prod(company)
    req = filed(company, environments=["prod"], break_glass=True)
    assert req.grant is not None

    as_user(client, company.judy)
    inbox = client.get("/inbox/").content.decode()
    assert "Break-glass access to review afterwards" in inbox
    assert f"Review #{req.pk}" in inbox

    as_user(client, company.alice)
    assert f"Review #{req.pk}" not in client.get("/inbox/").content.decode()

    requests.review_break_glass(req, company.judy, comment="checked the shell history")
    as_user(client, company.judy)
    assert f"Review #{req.pk}" not in client.get("/inbox/").content.decode()


def test_pages_say_what_an_approver_narrowed_and_name_objects_in_words(client, company, fleet):
    req = filed(company)
    requests.approve_request(req, company.judy, comment="ok", duration=timedelta(hours=2))

    as_user(client, company.alice)
    detail = client.get(f"/requests/{req.pk}/").content.decode()
    assert "(narrowed: for 2 hours)" in detail
    assert "duration_s" not in detail

    as_user(client, company.olivia)
    trail = client.get("/audit/").content.decode()
    assert f"request #{req.pk}: developer for alice" in trail
    assert " UTC" in trail


def test_the_audit_and_grants_tables_sort_by_a_clicked_column(client, company, fleet):
    filed(company)
    audit.record("alpha.note", reason="first by name")
    as_user(client, company.olivia)

    by_action = client.get("/audit/?sort=action").content.decode()
    assert by_action.index("alpha.note") < by_action.index("request.submitted")
    assert 'aria-sort="ascending"><a href="?sort=-action">What\u00a0▲</a>' in by_action
    newest_first = client.get("/audit/").content.decode()
    assert newest_first.index("alpha.note") < newest_first.index("request.submitted")

    Grant.objects.create(team=company.teams["payments"], role=Role.objects.get(name="admin"))
    Grant.objects.create(team=company.teams["approvers"], role=Role.objects.get(name="viewer"))
    by_role = client.get("/grants/?show=all&sort=role").content.decode()
    assert by_role.index("team approvers") < by_role.index("team payments")
    by_role_reversed = client.get("/grants/?show=all&sort=-role").content.decode()
    assert by_role_reversed.index("team payments") < by_role_reversed.index("team approvers")
    assert "sort=role" in by_role_reversed and 'aria-sort="descending"' in by_role_reversed


def test_the_people_table_sorts_by_a_clicked_column(client, company, fleet):
    as_user(client, company.olivia)

    by_email = client.get("/people/?q=@example.com&sort=-email").content.decode()

    assert by_email.index("peggy@example.com") < by_email.index("alice@example.com")
    assert 'aria-sort="descending"' in by_email and "sort=email" in by_email


def test_a_namespace_missing_on_a_cluster_is_said_before_anyone_approves(
    client, company, make_cluster
):
    cluster, sim = make_cluster("staging", last_reconcile_status=ReconcileStatus.SUCCEEDED)
    core = k8s_client.CoreV1Api(official_client(sim))
    core.create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name="payments")))
    warning = f"paymnets does not exist on {cluster.name} yet"

    as_user(client, company.alice)
    preview = client.post("/requests/new", form(namespaces="payments paymnets", preview="1"))
    assert warning in preview.content.decode()
    assert "payments does not exist" not in preview.content.decode()

    req = filed(company, namespaces=["paymnets"])
    as_user(client, company.judy)
    assert warning in client.get("/inbox/").content.decode()
    assert warning in client.get(f"/requests/{req.pk}/").content.decode()
