"""Service accounts over the API: owner team and operators only, within policy, token shown once."""

from __future__ import annotations

import pytest

from access.models import AuditEvent, Role
from clusters.models import ManagedServiceAccount

pytestmark = pytest.mark.django_db


def body(cluster, **overrides):
    data = {
        "name": "deployer",
        "namespace": "default",
        "owner_team": "payments",
        "roles": ["developer"],
        "clusters": [cluster.name],
        "rotation_period": "1d",
        "grace_period": "1h",
        "token_lifetime": "2d",
    }
    data.update(overrides)
    return data


def approve_all(api, account_id, approver="judy"):
    """The account's waiting requests, approved by an approver of the payments policies."""
    waiting = api("alice").get(f"/api/v1/service-accounts/{account_id}/").json()
    for request_id in waiting["approval_requests"]:
        done = api(approver).post(f"/api/v1/requests/{request_id}/approve/", {}, format="json")
        assert done.status_code == 200, done.json()


def test_a_team_member_declares_an_account_for_their_team(
    api, company, make_cluster, django_capture_on_commit_callbacks
):
    cluster, _ = make_cluster()

    with django_capture_on_commit_callbacks(execute=True):
        made = api("alice").post("/api/v1/service-accounts/", body(cluster), format="json")
    # developer on dev needs an approval, as it would for alice herself
    assert made.status_code == 201, made.json()
    account = made.json()
    assert account["state"] == "pending" and len(account["approval_requests"]) == 1
    with django_capture_on_commit_callbacks(execute=True):
        approve_all(api, account["id"])

    assert account["owner_team"] == "payments" and account["rotation_period"] == "1d"
    assert AuditEvent.objects.filter(action="serviceaccount.declared").count() == 1
    assert AuditEvent.objects.filter(action="serviceaccount.approved").count() == 1
    generations = api("alice").get(f"/api/v1/service-accounts/{account['id']}/generations/")
    assert generations.json()["count"] == 1
    assert "token" not in str(generations.json()).replace("token_lifetime", "")


def test_declaring_for_another_team_or_beyond_self_service_roles_is_refused(
    api, company, make_cluster
):
    cluster, _ = make_cluster()
    alice = api("alice")

    other_team = alice.post(
        "/api/v1/service-accounts/", body(cluster, owner_team="approvers"), format="json"
    )
    assert other_team.status_code == 403
    too_much = alice.post(
        "/api/v1/service-accounts/", body(cluster, roles=["admin"]), format="json"
    )
    assert too_much.status_code == 403
    assert "Only operators may give" in too_much.json()["detail"]
    assert not ManagedServiceAccount.objects.exists()


def test_an_account_is_404_for_people_outside_its_owner_team(api, company, make_cluster):
    cluster, _ = make_cluster()
    pk = api("olivia").post("/api/v1/service-accounts/", body(cluster), format="json").json()["id"]

    assert api("bob").get(f"/api/v1/service-accounts/{pk}/").status_code == 200
    assert api("mallory").get(f"/api/v1/service-accounts/{pk}/").status_code == 404
    for verb in ("rotate", "retire"):
        answer = api("mallory").post(f"/api/v1/service-accounts/{pk}/{verb}/", {"reason": "x"})
        assert answer.status_code == 404
    assert api("mallory").get("/api/v1/service-accounts/").json()["count"] == 0


def test_the_new_token_is_shown_once(
    api, company, make_cluster, django_capture_on_commit_callbacks
):
    cluster, _ = make_cluster()
    with django_capture_on_commit_callbacks(execute=True):
        pk = (
            api("alice")
            .post("/api/v1/service-accounts/", body(cluster, show_to_owner=True), format="json")
            .json()["id"]
        )
        approve_all(api, pk)
    number = api("alice").get(f"/api/v1/service-accounts/{pk}/generations/").json()["results"][0]

    url = f"/api/v1/service-accounts/{pk}/generations/{number['number']}/reveal/"
    first = api("bob").post(url)
    second = api("alice").post(url)

    assert first.status_code == 200, first.json()
    assert "kind: Config" in first.json()["kubeconfig"]
    assert first["Cache-Control"] == "no-store"
    assert second.status_code == 410
    assert api("mallory").post(url).status_code == 404


def test_changing_rotating_and_retiring(api, company, make_cluster):
    cluster, _ = make_cluster()
    olivia = api("olivia")
    pk = olivia.post("/api/v1/service-accounts/", body(cluster), format="json").json()["id"]

    changed = olivia.patch(
        f"/api/v1/service-accounts/{pk}/", {"roles": ["viewer"], "reason": "less"}, format="json"
    )
    assert changed.json()["roles"] == ["viewer"]
    rename = olivia.patch(f"/api/v1/service-accounts/{pk}/", {"name": "other"}, format="json")
    assert rename.status_code == 400
    assert olivia.post(f"/api/v1/service-accounts/{pk}/rotate/").status_code == 202
    assert olivia.post(f"/api/v1/service-accounts/{pk}/retire/").status_code == 400
    retired = olivia.post(f"/api/v1/service-accounts/{pk}/retire/", {"reason": "gone"})
    assert retired.json()["state"] == "retired"
    assert Role.objects.filter(name="viewer").exists()
