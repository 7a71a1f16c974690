"""Issue 15, item 3: delivery targets and rotation were open to every owner-team member.

An account an operator gave a role beyond self-service (cluster admin) is owned by payments; a
plain member of payments must not point its tokens at their own webhook or Secret, nor ask for
one to be sent. Where a member may do it, the new target is audited and announced to the team.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse

from access.models import AuditEvent, Role
from clusters import serviceaccounts
from clusters.models import DeliveryTarget, ManagedServiceAccount

pytestmark = pytest.mark.django_db
KEY = "k" * 40


def account_with(cluster, company, role: str) -> ManagedServiceAccount:
    """An account Warden declared (as an operator's access as code would) for payments."""
    return serviceaccounts.declare_service_account(
        serviceaccounts.AccountInput(
            name="deployer",
            namespace="default",
            owner_team=company.teams["payments"],
            roles=[Role.objects.get(name=role)],
            clusters=[cluster.name],
            rotation_period=timedelta(days=1),
            grace_period=timedelta(hours=1),
            token_lifetime=timedelta(days=2),
        )
    )


def webhook(url="https://attacker.example/collect"):
    return {"kind": "webhook", "url": url, "signing_key": KEY}


def test_a_team_member_cannot_send_an_admin_accounts_tokens_to_their_webhook_over_the_api(
    api, company, make_cluster
):
    cluster, _sim = make_cluster()
    account = account_with(cluster, company, "admin")

    added = api("alice").post(
        f"/api/v1/service-accounts/{account.pk}/targets/", webhook(), format="json"
    )

    assert added.status_code == 403
    assert not DeliveryTarget.objects.exists()


def test_nor_to_a_secret_of_their_choosing_on_the_page(browser_as, company, make_cluster):
    cluster, _sim = make_cluster()
    account = account_with(cluster, company, "admin")

    page = browser_as("bob").post(
        reverse("sa-target-add", args=[account.pk]),
        {"kind": "secret", "cluster": cluster.pk, "namespace": "default", "secret_name": "mine"},
    )

    assert page.status_code == 403
    assert not DeliveryTarget.objects.exists()


def test_nor_ask_for_a_new_token_of_it(api, browser_as, company, make_cluster):
    cluster, _sim = make_cluster()
    account = account_with(cluster, company, "admin")

    over_api = api("alice").post(f"/api/v1/service-accounts/{account.pk}/rotate/")
    on_page = browser_as("bob").post(reverse("sa-rotate", args=[account.pk]))

    assert over_api.status_code == 403
    assert on_page.status_code == 403
    account.refresh_from_db()
    assert account.rotation_requested_at is None


def test_nor_remove_where_its_tokens_go(api, company, make_cluster):
    cluster, _sim = make_cluster()
    account = account_with(cluster, company, "admin")
    target = serviceaccounts.add_delivery_target(account, **webhook("https://ci.example/hook"))

    removed = api("alice").delete(f"/api/v1/service-accounts/{account.pk}/targets/{target.pk}/")

    assert removed.status_code == 403
    assert DeliveryTarget.objects.filter(pk=target.pk).exists()


def test_an_operator_may(api, company, make_cluster):
    cluster, _sim = make_cluster()
    account = account_with(cluster, company, "admin")

    added = api("olivia").post(
        f"/api/v1/service-accounts/{account.pk}/targets/", webhook(), format="json"
    )

    assert added.status_code == 201, added.json()


def test_a_new_target_is_audited_and_announced_to_the_owner_team(
    api, company, make_cluster, django_capture_on_commit_callbacks
):
    # given: an account whose roles are self-service, so its team may manage it
    cluster, _sim = make_cluster()
    account = account_with(cluster, company, "viewer")

    # when: alice adds a webhook
    with django_capture_on_commit_callbacks(execute=True):
        added = api("alice").post(
            f"/api/v1/service-accounts/{account.pk}/targets/", webhook(), format="json"
        )

    # then: the audit names her and the target, and payments (alice and bob) hear of it
    assert added.status_code == 201, added.json()
    event = AuditEvent.objects.get(action="serviceaccount.target_added")
    assert event.actor_name == "alice" and "attacker.example" in event.after["target"]
    (notice,) = [m for m in mail.outbox if "now also go to" in m.subject]
    assert sorted(notice.to) == ["alice@example.com", "bob@example.com"]
    assert "attacker.example" in notice.body and KEY not in notice.body
