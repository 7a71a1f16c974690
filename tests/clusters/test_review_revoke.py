"""An access review that revokes a grant takes its bindings off the cluster (kubesim)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from access import services as access_services
from access.choices import ReviewDecision
from access.models import Person, ReviewItem
from access.services import reviews

pytestmark = pytest.mark.django_db


def test_a_revoke_in_a_review_removes_the_binding_from_the_cluster(
    make_cluster, catalogue, people, rbac, django_capture_on_commit_callbacks
):
    # given: heidi manages alice, whose standing grant is bound on a dev cluster
    heidi = Person.objects.create(dn="uid=heidi,ou=people", username="heidi")
    people["alice"].manager = heidi
    people["alice"].save(update_fields=["manager"])
    heidi.user = get_user_model().objects.create_user("heidi")
    heidi.save(update_fields=["user"])
    _, sim = make_cluster(environment="dev")
    with django_capture_on_commit_callbacks(execute=True):
        grant = access_services.grant_access(
            role=catalogue["developer"], person=people["alice"], namespaces=["default"]
        )
        access_services.grant_access(role=catalogue["viewer"], team=people["payments"])
    assert rbac.subjects(sim, "warden-developer", "default") == ["alice"]
    campaign = reviews.start_campaign(
        name="dev review", due_on=timezone.localdate() + timedelta(days=7), actor=None
    )

    # when heidi revokes alice's access in the review
    with django_capture_on_commit_callbacks(execute=True):
        reviews.decide(
            ReviewItem.objects.get(campaign=campaign, grant=grant),
            actor=heidi.user,
            decision=ReviewDecision.REVOKED,
            comment="alice moved teams",
        )

    # then the binding is gone from the cluster, and the team's binding is untouched
    assert rbac.subjects(sim, "warden-developer", "default") == []
    assert rbac.subjects(sim, "warden-viewer") == ["payments"]
