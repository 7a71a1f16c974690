"""Issue 15, item 8c: a leaver's access is ended, not hidden.

When the directory disables or loses a person, their personal grants and their requests end
(audited, with the reason) once WARDEN_LEAVER_GRACE_HOURS have passed (default: at once). If
they come back (a rehire, or a disable by mistake after the grace), they start from nothing but
their teams' standing grants. Within the grace, a mistaken disable undone keeps everything.
Team grants are never touched."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from kubernetes import client as k8s_client

from access.choices import GrantSource, RequestState
from access.models import AccessRequest, ApprovalPolicy, AuditEvent, Grant, Person, ReviewItem, Team
from access.selectors import review_items_with_details, review_rows
from access.services import requests, sync_directory
from access.services.grants import grant_access
from access.services.leavers import end_leavers_access
from access.services.reviews import start_campaign
from clusters import services as cluster_services

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def office(directory, make_cluster, catalogue, settings, rbac):
    """alice and bob in payments, synced; payments may view staging (standing), alice has her
    own developer grant there and a request waiting for admin."""
    settings.WARDEN_LEAVER_GRACE_HOURS = 0
    directory.add_person("alice", password="wonderland")
    directory.add_person("bob")
    directory.add_group("payments", people=["alice", "bob"])
    sync_directory()
    cluster, sim = make_cluster(environment="staging")
    rbac.core(sim).create_namespace(
        k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name="payments"))
    )
    ApprovalPolicy.objects.create(
        name="Staging",
        environment="staging",
        max_duration=timedelta(days=7),
        default_duration=timedelta(days=1),
    )
    alice = Person.objects.get(username="alice")
    team = Team.objects.get(name="payments")
    standing = grant_access(role=catalogue["viewer"], team=team, reason="payments reads staging")
    personal = grant_access(
        role=catalogue["developer"],
        person=alice,
        reason="request #0: on call",
        source=GrantSource.REQUEST,
        expires_at=timezone.now() + timedelta(days=30),
        namespaces=["payments"],
    )
    waiting = requests.submit_request(
        requester=alice,
        role=catalogue["admin"],
        environments=["staging"],
        justification="Debugging the staging incident INC-9",
    )
    cluster_services.reconcile_cluster(cluster.pk)
    return {
        "cluster": cluster,
        "sim": sim,
        "alice": alice,
        "standing": standing,
        "personal": personal,
        "waiting": waiting,
    }


def alices_bindings(rbac, sim) -> set[str]:
    found = set()
    for namespace in (None, "payments"):
        for name, binding in rbac.bindings(sim, namespace).items():
            if any(s.name.endswith("alice") for s in binding.subjects or []):
                found.add(name)
    return found


def reconcile(office):
    cluster_services.reconcile_cluster(office["cluster"].pk)


def test_a_leaver_loses_personal_grants_and_requests_at_once_and_a_rehire_gets_them_not_back(
    directory, office, rbac
):
    assert alices_bindings(rbac, office["sim"])  # her developer binding is there

    directory.disable("alice")
    sync_directory()
    reconcile(office)

    personal = Grant.objects.get(pk=office["personal"].pk)
    assert personal.revoked_at is not None and "left" in personal.revoke_reason
    waiting = AccessRequest.objects.get(pk=office["waiting"].pk)
    assert waiting.state == RequestState.CANCELLED
    ended = AuditEvent.objects.filter(action__in=["grant.revoked", "request.cancelled"])
    assert {e.action for e in ended} == {"grant.revoked", "request.cancelled"}
    assert all("left" in e.reason and "disabled in the directory" in e.reason for e in ended)
    assert Grant.objects.get(pk=office["standing"].pk).revoked_at is None  # the team's stays

    directory.modify_person("alice", pwdAccountLockedTime=None)  # rehired
    sync_directory()
    reconcile(office)

    assert Person.objects.get(username="alice").is_active
    assert Grant.objects.get(pk=office["personal"].pk).revoked_at is not None
    # Only what payments has: the team's viewer binding names the group, not alice.
    assert all("developer" not in name for name in alices_bindings(rbac, office["sim"])), (
        alices_bindings(rbac, office["sim"])
    )


def test_a_person_removed_from_the_directory_is_a_leaver_too(directory, office):
    directory.delete_person("alice")
    directory.set_members("payments", people=["bob"])
    sync_directory()

    personal = Grant.objects.get(pk=office["personal"].pk)
    assert personal.revoked_at is not None
    assert "no longer in the directory" in personal.revoke_reason


def test_within_the_grace_a_mistaken_disable_undone_keeps_everything(directory, office, settings):
    settings.WARDEN_LEAVER_GRACE_HOURS = 24
    directory.disable("alice")
    sync_directory()

    assert Grant.objects.get(pk=office["personal"].pk).revoked_at is None
    assert end_leavers_access() == []  # the sweep: not yet

    directory.modify_person("alice", pwdAccountLockedTime=None)
    sync_directory()
    assert end_leavers_access(timezone.now() + timedelta(hours=25)) == []
    assert Grant.objects.get(pk=office["personal"].pk).revoked_at is None
    assert AccessRequest.objects.get(pk=office["waiting"].pk).state == RequestState.PENDING


def test_after_the_grace_the_sweep_ends_a_leavers_access(directory, office, settings):
    settings.WARDEN_LEAVER_GRACE_HOURS = 24
    directory.disable("alice")
    sync_directory()

    ended = end_leavers_access(timezone.now() + timedelta(hours=25))

    assert ended == [office["alice"].pk]
    assert Grant.objects.get(pk=office["personal"].pk).revoked_at is not None
    assert AccessRequest.objects.get(pk=office["waiting"].pk).state == RequestState.CANCELLED
    assert end_leavers_access(timezone.now() + timedelta(hours=26)) == []  # once


def test_a_review_campaign_flags_a_leaver_still_in_the_grace(
    directory, office, settings, django_user_model
):
    settings.WARDEN_LEAVER_GRACE_HOURS = 24
    directory.disable("alice")
    sync_directory()
    olivia = django_user_model.objects.create_user("olivia", is_staff=True)
    Grant.objects.filter(pk=office["personal"].pk).update(
        created_at=timezone.now() - timedelta(days=3)
    )

    campaign = start_campaign(
        name="Q4",
        actor=olivia,
        due_on=timezone.localdate() + timedelta(days=7),
        request_grants_older_than_days=1,
    )
    items = review_items_with_details(ReviewItem.objects.filter(campaign=campaign))
    hers = [row for row in review_rows(items) if row.item.grant_id == office["personal"].pk]

    assert hers and hers[0].left
