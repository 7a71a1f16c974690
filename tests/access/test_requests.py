"""Access requests: submit, preview, approve, deny, cancel, end, expire — and every illegal move."""

from __future__ import annotations

import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from access import audit
from access.choices import RequestState
from access.models import AccessRequest, ApprovalPolicy, AuditEvent, Grant, Person, Role
from access.services import expire_grants, requests, sync_directory
from tests.factories import WHY, ask
from tests.fixtures.company import payments_may_break_glass_on_prod
from tests.fixtures.services import needs_postgresql

pytestmark = pytest.mark.django_db


def role(name):
    return Role.objects.get(name=name)


def actions():
    return list(AuditEvent.objects.order_by("seq").values_list("action", flat=True))


# --- preview and submission -------------------------------------------------------------------


def test_the_preview_says_what_would_be_granted_where_and_who_approves(company, fleet):
    preview = requests.preview_request(
        company.people["alice"], role("developer"), environments=["prod"], namespaces=["payments"]
    )

    assert preview.problems == []
    assert [(r.cluster, r.what, r.where) for r in preview.clusters] == [
        ("prod-1", "ClusterRole view", "payments"),
        ("prod-2", "ClusterRole view", "payments"),
    ]
    assert preview.approvals_required == 2
    assert preview.approvers == "2 approvals by Judy, Peggy (team approvers)"
    assert preview.duration == timedelta(hours=4)


def test_a_request_waits_for_approval_and_tells_the_approvers(company, fleet, mailoutbox):
    with_commit = ask(company)

    assert with_commit.state == RequestState.PENDING
    assert with_commit.grant is None
    assert actions() == ["request.submitted"]


def test_approvers_are_emailed_when_a_request_arrives(
    company, fleet, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        ask(company)

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert sorted(message.to) == ["judy@example.com", "peggy@example.com"]
    assert "Developer on staging in payments" in message.subject
    assert WHY in message.body
    assert "/requests/" in message.body


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"justification": "pls"}, "Say why you need this access"),
        ({"environments": ["qa"]}, "Unknown environment qa"),
        ({"namespaces": ["Bad_NS"]}, "is not a namespace name"),
        ({"namespaces": []}, "name the namespaces you need"),
        ({"clusters": ["nowhere"]}, "No cluster is called nowhere"),
        ({"duration": timedelta(days=60)}, "At most 14 days can be asked for here"),
        ({"duration": timedelta(hours=-1)}, "The duration must be positive"),
        ({"break_glass": True}, "Break-glass access is not allowed"),
    ],
)
def test_a_bad_request_is_refused_with_what_to_fix(company, fleet, change, message):
    with pytest.raises(ValidationError) as refused:
        ask(company, **change)

    assert message in " ".join(refused.value.messages)
    assert not AccessRequest.objects.exists()
    assert actions() == []


def test_a_role_not_offered_in_the_scope_is_refused(company, fleet):
    with pytest.raises(ValidationError, match="not offered on any cluster"):
        ask(company, role_name="admin", environments=["prod"], namespaces=[])


def test_asking_twice_for_the_same_thing_is_refused(company, fleet):
    first = ask(company)

    with pytest.raises(ValidationError, match=f"request #{first.pk}, which is waiting"):
        ask(company)


def test_asking_for_access_already_held_through_a_team_is_refused(company, fleet):
    Grant.objects.create(
        team=company.teams["payments"], role=role("developer"), namespaces=["pay*"]
    )

    with pytest.raises(ValidationError, match="through team payments, standing"):
        ask(company)


def test_asking_for_longer_than_held_access_lasts_is_allowed(company, fleet):
    Grant.objects.create(
        person=company.people["alice"],
        role=role("developer"),
        namespaces=["payments"],
        expires_at=timezone.now() + timedelta(hours=1),
    )

    assert ask(company).state == RequestState.PENDING


# --- deciding ---------------------------------------------------------------------------------


def test_one_approval_grants_on_staging(company, fleet):
    req = ask(company)

    req = requests.approve_request(req, company.judy, comment="ok")

    assert req.state == RequestState.ACTIVE
    grant = req.grant
    assert grant.person == company.people["alice"]
    assert grant.namespaces == ["payments"]
    assert grant.environments == ["staging"]
    assert grant.expires_at == req.expires_at
    assert abs((grant.expires_at - timezone.now()) - timedelta(days=3)) < timedelta(minutes=1)
    assert actions() == [
        "request.submitted",
        "request.approved",
        "grant.created",
        "request.activated",
    ]
    assert audit.verify().ok


def test_prod_needs_two_different_approvers(company, fleet):
    req = ask(company, environments=["prod"])

    req = requests.approve_request(req, company.judy)
    assert req.state == RequestState.PENDING
    with pytest.raises(ValidationError, match="already approved"):
        requests.approve_request(req, company.judy)

    req = requests.approve_request(req, company.peggy)
    assert req.state == RequestState.ACTIVE
    assert req.approvals.count() == 2


def test_nobody_approves_their_own_request(company, fleet):
    company.teams["approvers"].memberships.create(person=company.people["alice"])
    req = ask(company)

    with pytest.raises(PermissionDenied, match="cannot approve your own"):
        requests.approve_request(req, company.alice)


def test_someone_outside_the_approver_teams_cannot_approve(company, fleet):
    req = ask(company)

    for outsider in (company.mallory, company.bob, company.olivia):
        with pytest.raises(PermissionDenied, match="Only approvers may decide"):
            requests.approve_request(req, outsider)
    assert AccessRequest.objects.get(pk=req.pk).state == RequestState.PENDING


def test_an_approver_who_left_the_approver_team_can_no_longer_approve(company, fleet):
    req = ask(company)
    company.teams["approvers"].memberships.filter(person=company.people["judy"]).delete()

    with pytest.raises(PermissionDenied):
        requests.approve_request(req, company.judy)


def test_operators_approve_where_a_policy_names_no_approver_team(company, fleet):
    ApprovalPolicy.objects.get(environment="staging").approver_teams.clear()
    req = ask(company)

    with pytest.raises(PermissionDenied, match="Warden operators"):
        requests.approve_request(req, company.judy)
    assert requests.approve_request(req, company.olivia).state == RequestState.ACTIVE


def test_an_approver_may_narrow_the_scope_and_shorten_the_duration(company, fleet):
    req = ask(company, environments=["prod"], namespaces=["payments", "checkout"])

    requests.approve_request(
        req, company.judy, clusters=["prod-1"], namespaces=["payments"], duration=timedelta(hours=1)
    )
    req = requests.approve_request(req, company.peggy)

    grant = req.grant
    assert (grant.clusters, grant.namespaces) == (["prod-1"], ["payments"])
    assert abs((grant.expires_at - timezone.now()) - timedelta(hours=1)) < timedelta(minutes=1)
    approved = AuditEvent.objects.filter(action="request.approved").order_by("seq").first()
    assert approved.before == {
        "clusters": [],
        "namespaces": ["checkout", "payments"],
        "duration_s": 14400,
    }


@pytest.mark.parametrize(
    ("narrowing", "message"),
    [
        ({"clusters": ["dev-1"]}, "not part of this request"),
        ({"namespaces": ["kube-system"]}, "not all part of this request"),
        ({"duration": timedelta(days=30)}, "shorten the duration, not lengthen"),
    ],
)
def test_an_approver_cannot_widen_a_request(company, fleet, narrowing, message):
    req = ask(company)

    with pytest.raises(ValidationError, match=message):
        requests.approve_request(req, company.judy, **narrowing)
    assert AccessRequest.objects.get(pk=req.pk).state == RequestState.PENDING
    assert not AccessRequest.objects.get(pk=req.pk).approvals.exists()


def test_a_denied_request_cannot_be_approved_later(company, fleet):
    req = ask(company)
    with pytest.raises(ValidationError, match="Say why"):
        requests.deny_request(req, company.judy, comment=" ")

    requests.deny_request(req, company.judy, comment="use the read-only role")

    with pytest.raises(ValidationError, match="is denied; it can no longer be decided"):
        requests.approve_request(req, company.peggy)
    assert not Grant.objects.exists()


def test_a_cancelled_request_cannot_be_approved(company, fleet):
    req = ask(company)
    with pytest.raises(PermissionDenied):
        requests.cancel_request(req, company.bob)

    requests.cancel_request(req, company.alice)

    with pytest.raises(ValidationError, match="is cancelled"):
        requests.approve_request(req, company.judy)
    with pytest.raises(ValidationError, match="is cancelled"):
        requests.cancel_request(req, company.alice)


@pytest.mark.django_db(transaction=True)
def test_two_approvers_racing_on_prod_are_counted_once_each(company, fleet):
    needs_postgresql("concurrent writers need PostgreSQL's row locks (CI runs it)")
    req = ask(company, environments=["prod"])
    barrier = threading.Barrier(3)
    errors = []

    def approve(user):
        try:
            barrier.wait()
            requests.approve_request(req, user)
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    # judy twice at once and peggy once: two approvals count, judy's second is refused
    threads = [
        threading.Thread(target=approve, args=(u,))
        for u in (company.judy, company.judy, company.peggy)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    req.refresh_from_db()
    assert req.state == RequestState.ACTIVE
    assert req.approvals.count() == 2
    assert Grant.objects.count() == 1
    # judy's second click finds her approval, or the request already active: refused either way
    assert len(errors) == 1
    assert str(errors[0]) in (
        "['You have already approved this request.']",
        "['This request is active; it can no longer be decided.']",
    )


# --- auto-approve and break-glass -------------------------------------------------------------


def test_viewer_on_dev_is_granted_at_once(company, fleet):
    req = ask(company, role_name="viewer", environments=["dev"])

    assert req.state == RequestState.ACTIVE
    assert req.grant is not None
    assert "request.auto_approved" in actions()


def test_break_glass_is_immediate_short_loud_and_reviewed_after(
    company, fleet, caplog, django_capture_on_commit_callbacks
):
    payments_may_break_glass_on_prod(company)
    with django_capture_on_commit_callbacks(execute=True):
        req = ask(company, environments=["prod"], break_glass=True)

    assert req.state == RequestState.ACTIVE
    assert req.duration == timedelta(hours=1)
    assert "BREAK-GLASS" in caplog.text
    assert "request.break_glass" in actions()
    assert mail.outbox[0].subject.startswith("[Warden] BREAK-GLASS")
    with pytest.raises(ValidationError, match="At most 1 hour"):
        ask(
            company, who="bob", environments=["prod"], break_glass=True, duration=timedelta(hours=2)
        )

    with pytest.raises(PermissionDenied):
        requests.review_break_glass(req, company.alice, comment="all fine")
    requests.review_break_glass(req, company.judy, comment="checked the shell history")
    with pytest.raises(ValidationError, match="already been reviewed"):
        requests.review_break_glass(req, company.peggy, comment="again")


# --- ending access ----------------------------------------------------------------------------


def test_the_requester_ends_their_access_early(company, fleet):
    req = requests.approve_request(ask(company), company.judy)

    requests.end_access(req, company.alice, reason="done")

    req.refresh_from_db()
    assert req.state == RequestState.REVOKED
    assert req.grant.revoked_at is not None
    with pytest.raises(ValidationError, match="no access to end"):
        requests.end_access(req, company.alice)


def test_an_outsider_cannot_end_someone_elses_access(company, fleet):
    req = requests.approve_request(ask(company), company.judy)

    with pytest.raises(PermissionDenied):
        requests.end_access(req, company.mallory)
    requests.end_access(req, company.olivia, reason="incident over")
    assert AccessRequest.objects.get(pk=req.pk).ended_by == company.olivia


def test_access_expires_even_after_downtime(company, fleet, django_capture_on_commit_callbacks):
    req = requests.approve_request(ask(company), company.judy)
    # Warden was down when the grant ran out
    Grant.objects.filter(pk=req.grant_id).update(expires_at=timezone.now() - timedelta(hours=3))

    with django_capture_on_commit_callbacks(execute=True):
        expired = expire_grants()

    req.refresh_from_db()
    assert expired == [req.grant_id]
    assert req.state == RequestState.EXPIRED
    assert Grant.objects.in_force(timezone.now()).count() == 0
    assert actions()[-2:] == ["grant.expired", "request.expired"]
    assert "has expired" in mail.outbox[-1].subject
    assert expire_grants() == []  # a second sweep finds nothing


def test_requesters_are_reminded_once_before_expiry_with_an_extend_link(
    company, fleet, django_capture_on_commit_callbacks
):
    req = requests.approve_request(ask(company), company.judy)
    soon = timezone.now() + timedelta(hours=2)
    AccessRequest.objects.filter(pk=req.pk).update(expires_at=soon)

    with django_capture_on_commit_callbacks(execute=True):
        assert requests.send_expiry_reminders() == [req.pk]
        assert requests.send_expiry_reminders() == []

    reminder = mail.outbox[-1]
    assert reminder.to == ["alice@example.com"]
    assert f"/requests/{req.pk}/#extend" in reminder.body


def test_a_directory_sync_never_brings_back_expired_or_revoked_access(
    directory, fleet, django_user_model
):
    # given alice and bob from the directory, each with access from a request
    directory.add_person("alice")
    directory.add_person("bob")
    sync_directory()
    operator = django_user_model.objects.create_user("olivia", is_staff=True)
    granted = {}
    for username in ("alice", "bob"):
        req = requests.submit_request(
            requester=Person.objects.get(username=username),
            role=role("developer"),
            environments=["staging"],
            namespaces=["payments"],
            justification=WHY,
        )
        granted[username] = requests.approve_request(req, operator)
    # alice is done early; bob's time runs out
    requests.end_access(granted["alice"], operator)
    Grant.objects.filter(pk=granted["bob"].grant_id).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    expire_grants()

    # when the directory changes both people and syncs again
    directory.modify_person("alice", displayName="Alice Again")
    directory.modify_person("bob", mail="bob@new.example.com")
    assert sync_directory().status == "succeeded"

    # then neither access comes back, nor is prolonged
    assert Grant.objects.in_force(timezone.now()).count() == 0
    states = AccessRequest.objects.order_by("pk").values_list("state", flat=True)
    assert list(states) == [RequestState.REVOKED, RequestState.EXPIRED]


def test_an_operator_runs_the_expiry_sweep_by_command(company, fleet):
    req = requests.approve_request(ask(company), company.judy)
    Grant.objects.filter(pk=req.grant_id).update(expires_at=timezone.now() - timedelta(hours=1))
    out = StringIO()

    call_command("expire_grants", stdout=out)
    call_command("expire_grants", stdout=out)

    assert f"Ended 1 grant whose time was up: #{req.grant_id}." in out.getvalue()
    assert "nothing to end" in out.getvalue()
    assert AccessRequest.objects.get(pk=req.pk).state == RequestState.EXPIRED


def test_the_preview_names_a_role_not_offered_by_its_display_name(company, fleet):
    preview = requests.preview_request(
        company.people["alice"], Role.objects.get(name="admin"), environments=["prod"]
    )

    assert preview.problems == [
        "Cluster admin is not offered on any cluster of this scope: pick another role or scope."
    ]
